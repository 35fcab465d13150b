"""One face pipeline for the whole chapter: detect, align, embed, then compare.

``FacePipeline`` chains ``fsl.faces.detect`` (MTCNN), an alignment
(``align_face`` onto the 5-point template, or FaceNet's box-plus-margin
``crop_face``), an embedding model, and a decision:

* ``verify(a, b)``: distance between the largest faces of two photos, the
  threshold, and same / different;
* ``enroll(directory)`` + ``identify(photo, gallery)``: one-shot recognition
  against a gallery (one folder per person), with an "unknown" answer when the
  nearest enrolled person is farther than the threshold;
* ``cluster(directory)``: group the faces of a folder of photos.

The embedding model is a Keras model (in memory, a ``.keras`` file or a run
folder written by ``fsl train``) or a SavedModel written by ``fsl.export``.
Images reach it as raw pixels, ``float32`` in ``0..255`` of shape
``[N, H, W, C]``; standardisation happens inside the model (a
``fsl.layers.Standardize`` layer or the export's preprocessing) or, for a
bare Keras model, through ``preprocessing``.

Photos of already cropped faces (ORL, LFW crops) can skip detection with
``detect_faces=False``: the whole photo is then the face.

Label convention: distances, smaller = more similar; a pair is the same
person when ``distance <= threshold``. With a ``cohort`` (a face run's
training faces, loaded by ``from_run`` from ``cohort.npy``) the distances are
S-normalised (``fsl.evaluation.s_norm_distances``) and the threshold is on
that scale.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fsl._checks import PathLike
from fsl.faces.crops import face_crops
from fsl.faces.detect import Face
from fsl.preprocessing import Preprocessing

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")
#: ``align`` values of ``FacePipeline`` (and ``--align`` of the face commands).
ALIGN_MODES = ("template", "dlib-chip", "crop", "none")
#: ``method`` values of ``FacePipeline.cluster`` (and ``fsl cluster --method``).
CLUSTER_METHODS = ("agglomerative", "kmeans")


#: Batches up to this size call a Keras embedder directly rather than through predict().
_DIRECT_CALL_MAX = 16
#: Run tasks whose models embed faces.
FACE_TASKS = ("facenet", "pretrained")


class NoFaceError(ValueError):
    """Raised when a photo that must contain a face has none."""


@dataclasses.dataclass
class Verification:
    """Result of ``FacePipeline.verify``."""

    distance: float
    threshold: float
    same: bool
    #: Both faces like the model's training images (``FacePipeline.domain``);
    #: ``None`` when the pipeline has no domain.
    in_domain: bool | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Identification:
    """Result of ``FacePipeline.identify``: ``name`` is ``None`` for unknown."""

    name: str | None
    distance: float
    threshold: float
    nearest: str
    #: The face like the model's training data; ``None`` without a ``domain``.
    in_domain: bool | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _serving_preparation(prep: Preprocessing, overrides: dict[str, Any], where) -> dict[str, Any]:
    """``detect_faces``, ``align`` (and ``margin``) to serve a run trained with
    ``prep``: the run's own unless ``overrides`` asks otherwise, with a warning
    then (``overrides`` loses those keys)."""
    detect = overrides.pop("detect_faces", None)
    align = overrides.pop("align", None)
    trained = prep.align
    if detect is None:
        detect = trained != "none" if align is None else True
    if align is None:
        align = trained if trained != "none" else "template"
    # FacePipeline's align="none" with detection is the raw detected box.
    served = "none" if not detect else ("box" if align == "none" else align)
    if served != trained:
        words = {"none": "whole photos (no face detection)", "crop": "detected boxes plus margin",
                 "template": "faces aligned on the 5-point template",
                 "dlib-chip": "faces aligned as dlib's face chips",
                 "box": "detected boxes without margin"}
        logger.warning(
            "%s was trained on %s; serving it %s instead: its threshold and accuracy were "
            "measured on the first (pass the run's own preparation, or calibrate a threshold "
            "for this one)", where, words[trained], words[served])
    chosen = {"detect_faces": bool(detect), "align": align}
    if trained == "crop" and "margin" not in overrides:
        chosen["margin"] = prep.margin
    return chosen


def list_images(directory: PathLike, recursive: bool = True) -> list[pathlib.Path]:
    """Image files under ``directory``, sorted.

    Raises:
        FileNotFoundError: if ``directory`` does not exist.
        ValueError: if it holds no image.
    """
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"Not a directory: {str(root)!r}")
    pattern = "**/*" if recursive else "*"
    paths = sorted(
        p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {str(root)!r}"
        )
    return paths


class FacePipeline:
    """Detect, align and embed faces; verify, identify and cluster them.

    Args:
        embedder: a Keras model, a loaded SavedModel (``tf.saved_model.load``)
            with a ``serving_default`` signature, or any callable mapping raw
            pixels ``[N, H, W, C]`` (float32, 0..255) to embeddings ``[N, D]``.
        image_size: ``(height, width)`` (or one int) the embedder expects.
        channels: 1 (grey) or 3 (RGB) channels the embedder expects.
        preprocessing: standardisation applied before a bare Keras model:
            ``"fixed"`` (FaceNet's ``(x - 127.5) / 128``), ``"prewhiten"``,
            ``"unit"`` (``x / 255``) or ``None`` (the model standardises
            itself, as exported models and models with a ``Standardize``
            layer do); or a whole ``fsl.preprocessing.Preprocessing`` (then
            ``image_size`` and ``channels`` are its own). Crops reach the
            model through ``fsl.preprocessing`` (channels, resizing,
            standardisation), as in training and export.
        align: ``"template"`` (similarity transform onto the 5-point
            template), ``"dlib-chip"`` (onto dlib's face chip, for the
            pretrained dlib ResNet), ``"crop"`` (FaceNet's box plus margin)
            or ``"none"``.
        margin: margin in pixels for ``align="crop"``.
        detect_faces: run MTCNN; ``False`` treats each photo as one face.
        threshold: distance at or below which two faces are the same person
            (on the S-norm scale when ``cohort`` is given; it may then be
            negative).
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.
        min_confidence: detector score threshold.
        cohort: optional ``[C, D]`` embeddings of other people (a face run's
            training faces, ``cohort.npy``): distances in ``verify``,
            ``identify`` and agglomerative ``cluster`` are then S-normalised
            against it (``fsl.evaluation.s_norm_distances``), the score the
            run's ``s_norm_verification_accuracy`` measures.
        domain: optional ``fsl.evaluation.domain.Domain`` of the model's
            training images (a run's ``domain.npz``): a face whose pixel
            statistics fall outside theirs is out of domain (noise, a blank
            frame, a digit model shown faces): ``embed`` logs a warning
            naming it and the decisions say ``in_domain=False``.

    Examples:

    >>> pipeline = FacePipeline.from_run("saved_models/facenet-orl")  # doctest: +SKIP
    >>> pipeline.verify("a.jpg", "b.jpg")  # doctest: +SKIP
    Verification(distance=0.71, threshold=0.93, same=True)
    """

    def __init__(
        self,
        embedder: Any,
        image_size: int | Sequence[int] = 96,
        channels: int = 1,
        preprocessing: str | None = None,
        align: str = "template",
        margin: float = 32,
        detect_faces: bool = True,
        threshold: float = 1.0,
        metric: str = "L2",
        min_confidence: float = 0.9,
        cohort: np.ndarray | None = None,
        domain: Any = None,
    ):
        if isinstance(preprocessing, Preprocessing):
            prep = preprocessing
        else:
            if isinstance(image_size, (int, np.integer)):
                image_size = (int(image_size), int(image_size))
            image_size = tuple(int(s) for s in image_size)
            if len(image_size) != 2 or min(image_size) < 8:
                raise ValueError(
                    f"image_size must be (height, width) >= 8. Received: image_size={image_size}"
                )
            prep = Preprocessing(image_size, channels, preprocessing)
        if align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}. Received: align={align!r}")
        if cohort is not None:
            from fsl.evaluation.verification import check_cohort

            cohort, _ = check_cohort(cohort)
        if not np.isfinite(threshold) or (threshold < 0 and cohort is None):
            raise ValueError(
                "threshold must be a finite number (>= 0 for raw distances, without a "
                f"cohort). Received: threshold={threshold!r}"
            )
        from fsl.evaluation.verification import pair_distances

        pair_distances(np.zeros((1, 2)), np.zeros((1, 2)), metric)  # validates the metric
        self.embedder = embedder
        self.prep = prep
        self.image_size = prep.image_size
        self.channels = prep.channels
        self.preprocessing = prep.standardize
        self.align = align
        self.margin = float(margin)
        self.detect_faces = bool(detect_faces)
        self.threshold = float(threshold)
        self.metric = metric
        self.min_confidence = float(min_confidence)
        self.cohort = cohort
        self.domain = domain
        self._embed_fn = self._make_embed_fn(embedder)

    # === Construction from saved artefacts ===

    @classmethod
    def from_run(
        cls, run_dir: PathLike, score_norm: str | None = None, **overrides: Any
    ) -> FacePipeline:
        """Build a pipeline from a run folder written by ``fsl train facenet``.

        Loads the run's embedding model, and takes from ``config.json`` its
        preprocessing (``fsl.preprocessing.Preprocessing``: how faces were
        cut out of the photos, image size, channels, standardisation) and
        from ``metrics.json`` the metric and the verification threshold.
        Faces are prepared as the model was trained: a run trained on whole
        photos serves whole photos (no detection), one trained on aligned
        faces detects and aligns them the same way. Keyword arguments
        override what the files say; asking for another face preparation
        (``detect_faces``, ``align``) logs a warning naming both, since the
        run's threshold and accuracy hold only for the one it was trained on.

        Args:
            run_dir: the run folder.
            score_norm: ``None`` (default): raw distances and the run's
                ``threshold``; ``"s-norm"``: distances S-normalised against
                the run's training faces (``cohort.npy``, saved by runs trained
                with ``score_norm="s-norm"``) and the run's
                ``s_norm_threshold``. Both thresholds are chosen on training
                pairs; the run's ``accuracy_at_threshold`` and
                ``s_norm_accuracy_at_threshold`` say how each did on the
                unseen people.
            **overrides: ``FacePipeline`` arguments.

        Raises:
            FileNotFoundError: if the folder or its model is missing, or
                ``score_norm="s-norm"`` and the run has no cohort.
            ValueError: if the run records no preprocessing, or for an
                unknown ``score_norm``.
        """
        if score_norm not in (None, "s-norm"):
            raise ValueError(
                f"score_norm must be None or 's-norm'. Received: score_norm={score_norm!r}"
            )
        from fsl.runs import open_run

        run = open_run(run_dir)  # it has a model.keras, or it raises
        metrics = run.read_metrics() if run.metrics_path.is_file() else {}
        task = run.read_config().get("task")
        if task not in FACE_TASKS and overrides.get("detect_faces") is not False:
            logger.warning("%s is a %r run, not a face model: its embeddings and threshold "
                           "were learned on other images", run.path, task)
        prep = run.preprocessing()
        overrides.update(_serving_preparation(prep, overrides, run.path))
        for key in ("image_size", "channels"):
            if key in overrides:
                value = overrides.pop(key)
                if key == "image_size" and isinstance(value, (int, np.integer)):
                    value = (int(value), int(value))
                prep = dataclasses.replace(prep, **{key: value})
        if "preprocessing" in overrides and not isinstance(overrides["preprocessing"], Preprocessing):
            prep = dataclasses.replace(prep, standardize=overrides.pop("preprocessing"))
        kwargs: dict[str, Any] = {"preprocessing": prep}
        if "metric" in metrics:
            kwargs["metric"] = metrics["metric"]
        if "threshold" in metrics:
            kwargs["threshold"] = float(metrics["threshold"])
        if score_norm == "s-norm":
            kwargs["cohort"], kwargs["threshold"] = run.read_s_norm()
        kwargs["domain"] = run.read_domain()
        kwargs.update(overrides)
        logger.info(
            "FacePipeline from %s: %s", run.path,
            {k: (f"{len(v)} rows" if k == "cohort" else v) for k, v in kwargs.items()},
        )
        # The run's own loader: fsl's classes registered, its dtype policy.
        which = "embedding" if run.embedding_path.is_file() else "model"
        return cls(run.load_model(which), **kwargs)

    @classmethod
    def from_saved_model(cls, export_dir: PathLike, **kwargs: Any) -> FacePipeline:
        """Build a pipeline on an embedding SavedModel written by ``fsl.export``.

        The export takes raw pixels and standardises inside, so
        ``preprocessing`` is ``None``; size and channels come from its
        signature unless given.
        """
        from fsl.export import export_info, load_exported, signature_input_spec

        loaded = load_exported(export_dir)
        contract = export_info(loaded).get("contract")
        if contract is not None:
            # Prepare faces as the exported model was trained.
            kwargs.update(_serving_preparation(Preprocessing.from_config(contract), kwargs,
                                               export_dir))
        spec = next(iter(signature_input_spec(loaded).values()))
        kwargs.setdefault("image_size", tuple(int(s) for s in spec.shape[1:3]))
        kwargs.setdefault("channels", int(spec.shape[-1]))
        kwargs["preprocessing"] = None
        return cls(loaded, **kwargs)

    @staticmethod
    def _make_embed_fn(embedder: Any) -> Callable[[np.ndarray], np.ndarray]:
        signatures = getattr(embedder, "signatures", None)
        if signatures is not None and "serving_default" in signatures:
            serve = signatures["serving_default"]

            def call_signature(images: np.ndarray) -> np.ndarray:
                import tensorflow as tf

                outputs = serve(tf.constant(images, tf.float32))
                return np.asarray(next(iter(outputs.values())))

            return call_signature
        if hasattr(embedder, "predict"):
            def call_model(images: np.ndarray) -> np.ndarray:
                # A few photos (one served request): a direct call, without
                # predict()'s per-call set-up; many: predict's batches.
                if len(images) <= _DIRECT_CALL_MAX:
                    import keras

                    return np.asarray(keras.ops.convert_to_numpy(
                        embedder(np.asarray(images, np.float32), training=False)))
                return np.asarray(embedder.predict(images, verbose=0))

            return call_model
        if callable(embedder):
            return lambda images: np.asarray(embedder(images))
        raise TypeError(
            "embedder must be a Keras model, a SavedModel or a callable. "
            f"Received: embedder of type {type(embedder).__name__}"
        )

    # === Steps ===

    def faces(self, image: Any) -> list[tuple[Face | None, np.ndarray]]:
        """Every face of a photo as ``(Face or None, crop [H, W, C] float32 0..255)``.

        Largest face first. With ``detect_faces=False`` the photo itself is
        the only face (``Face`` is ``None``).
        """
        return face_crops(image, self.prep, self.align, self.margin,
                          detect_faces=self.detect_faces, min_confidence=self.min_confidence)

    def embed_images(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings ``[N, D]`` of face crops ``[N, H, W, C]`` (0..255)."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim != 4 or tuple(crops.shape[1:3]) != self.image_size:
            raise ValueError(
                f"Expected crops of shape [N, {self.image_size[0]}, {self.image_size[1]}, "
                f"{self.channels}]. Received: shape={crops.shape}"
            )
        if crops.size and 0 < crops.max() <= 1.0:
            warnings.warn(
                "Face crops are all <= 1, but the model takes pixels in 0..255: pass "
                f"0..255 values (multiply by 255). Received: max={float(crops.max())!r}",
                UserWarning, stacklevel=2)
        return self._embed_fn(self.prep.standardize_pixels(crops))

    def embed(self, image: Any) -> np.ndarray:
        """Embedding ``[D]`` of the largest face of a photo.

        Raises:
            NoFaceError: if the photo has no face.
        """
        return self.embed_with_domain(image)[0]

    def embed_with_domain(self, image: Any) -> tuple[np.ndarray, bool | None]:
        """``(embedding [D], in domain)`` of the largest face of a photo.

        In domain: the face's pixels look like the model's training images
        (``domain``; ``None`` when the pipeline has none). A face out of
        domain is also named in a logged warning.

        Raises:
            NoFaceError: if the photo has no face.
        """
        embedding, known, _ = self.embed_largest_face(image)
        return embedding, known

    def embed_largest_face(self, image: Any) -> tuple[np.ndarray, bool | None, Face | None]:
        """``(embedding [D], in domain, Face)`` of the largest face of a photo:
        ``embed_with_domain`` plus where the face is (``None`` without
        detection), e.g. to cut a thumbnail of it.

        Raises:
            NoFaceError: if the photo has no face.
        """
        found = self.faces(image)
        name = f" in {str(image)!r}" if isinstance(image, (str, os.PathLike)) else ""
        if not found:
            raise NoFaceError(f"No face found{name}")
        face, crop = found[0]
        embedding = self.embed_images(crop[None])[0]
        if self.domain is None:
            return embedding, None, face
        reason = self.domain.reason(crop)
        if reason is not None:
            logger.warning("The face%s looks unlike the images the model was trained on (%s): "
                           "decisions about it are unreliable", name or " given", reason)
        return embedding, reason is None, face

    def embed_files(self, paths: Sequence[PathLike]) -> tuple[np.ndarray, list[int]]:
        """Embeddings of the largest face of each file, skipping (with a warning
        naming the file) those with no face or that cannot be read; returns
        ``(embeddings [K, D], indices of the K files kept)``."""
        embeddings, kept = [], []
        for index, path in enumerate(paths):
            try:
                embeddings.append(self.embed(path))
            except NoFaceError:
                logger.warning("Skipping %s: no face found", path)
                continue
            except ValueError as error:  # unreadable or not an image
                logger.warning("Skipping %s: %s", path, error)
                continue
            kept.append(index)
        return (np.stack(embeddings) if embeddings else np.zeros((0, 0), np.float32)), kept

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances between rows of two embedding arrays (``self.metric``),
        S-normalised against ``self.cohort`` when the pipeline has one."""
        from fsl.evaluation.verification import pair_distances, s_norm_distances

        a, b = np.atleast_2d(a), np.atleast_2d(b)
        if self.cohort is not None:
            return s_norm_distances(a, b, self.cohort, self.metric)
        return pair_distances(a, b, self.metric)

    # === Decisions ===

    def verify(self, a: Any, b: Any) -> Verification:
        """Are the largest faces of photos ``a`` and ``b`` the same person?"""
        (ea, known_a), (eb, known_b) = self.embed_with_domain(a), self.embed_with_domain(b)
        distance = float(self.distance(ea, eb)[0])
        return Verification(distance, self.threshold, distance <= self.threshold,
                            None if known_a is None else known_a and known_b)

    def enroll(self, directory: PathLike):
        """A ``fsl.evaluation.Gallery`` of the people in ``directory``.

        ``directory`` holds one folder per person (the folder name is the
        person's name) with one or more photos each: one-shot enrolment works
        with a single photo. Photos with no face, or unreadable, are skipped with a warning naming them.
        """
        from fsl.evaluation.recognition import Gallery

        root = pathlib.Path(directory)
        paths = []
        for path in list_images(root):
            if path.parent == root:
                logger.warning("Skipping %s: gallery photos go in one folder per person", path)
                continue
            paths.append(path)
        embeddings, kept = self.embed_files(paths)
        names = [paths[k].parent.name for k in kept]
        if not kept:
            raise ValueError(f"No enrolable face found in gallery {str(root)!r}")
        gallery = Gallery(metric=self.metric, cohort=self.cohort)
        gallery.enroll(embeddings, names)
        return gallery

    def identify(self, image: Any, gallery) -> Identification:
        """The enrolled person nearest to the largest face, or ``None`` (unknown)."""
        embedding, known = self.embed_with_domain(image)
        embedding = embedding[None]
        names, distances = gallery.identify(embedding, self.threshold)
        nearest = gallery.nearest(embedding)[0][0] if hasattr(gallery, "nearest") else names[0]
        return Identification(names[0], float(distances[0]), self.threshold, str(nearest), known)

    def calibrate(self, directory: PathLike, far: float | None = None, seed: int = 0) -> dict:
        """Choose the threshold on the labelled pairs of a folder of the people served.

        The chapter's recipe for a threshold that holds on one's own photos:
        embed a labelled folder (one sub-folder per person) as this pipeline
        serves photos, form all same-person pairs and as many different-person
        pairs (``fsl.evaluation.verification_pairs``), and pick the threshold
        of best accuracy, or the largest whose false-accept rate is at most
        ``far`` (``fsl.evaluation.val_far``). On the S-norm scale when the
        pipeline has a cohort. Photos with no face, or unreadable, are skipped with a warning naming them.

        Args:
            directory: folder with one sub-folder of photos per person (two
                or more people, some with two or more photos).
            far: target false-accept rate in ``[0, 1]``; ``None``: best accuracy.
            seed: seed of the different pairs and of the 10 folds.

        Returns:
            ``threshold``, ``criterion``, ``accuracy_at_threshold``, ``val``
            and ``far`` at it, ``kfold_accuracy`` / ``kfold_std`` (10-fold
            accuracy, each fold's threshold chosen on the other nine: what to
            expect on new pairs), the counts and ``score_norm``.

        Raises:
            FileNotFoundError: ``directory`` does not exist.
            ValueError: ``far`` outside ``[0, 1]``, or too few faces for a
                same and a different pair.
        """
        from fsl.data.faces import list_faces
        from fsl.evaluation import (
            accuracy_at_threshold,
            best_threshold,
            kfold_verification,
            val_far,
            verification_pairs,
        )

        if far is not None and not 0.0 <= float(far) <= 1.0:
            raise ValueError(f"far must be in [0, 1]. Received: far={far!r}")
        folder = list_faces(directory, min_images=1)
        embeddings, kept = self.embed_files(folder.paths)
        labels = np.asarray(folder.labels)[kept]
        if len(labels) == 0:
            raise ValueError(f"No face found in {str(directory)!r}")
        i, j, same = verification_pairs(labels, seed)
        distances = self.distance(embeddings[i], embeddings[j])
        if far is None:
            threshold, _ = best_threshold(distances, same)
            criterion = "best accuracy"
        else:
            threshold = val_far(distances, same, float(far))["threshold"]
            criterion = f"largest threshold with FAR <= {float(far):g}"
        accepted = distances <= threshold
        folds = kfold_verification(distances, same, n_folds=min(10, len(same)), seed=seed)
        return {
            "threshold": float(threshold),
            "criterion": criterion,
            "accuracy_at_threshold": accuracy_at_threshold(distances, same, threshold),
            "val": float(np.mean(accepted[same == 1])),
            "far": float(np.mean(accepted[same == 0])),
            "kfold_accuracy": folds["mean_accuracy"],
            "kfold_std": folds["std_accuracy"],
            "pairs": int(len(same)),
            "same_pairs": int(same.sum()),
            "images": int(len(labels)),
            "identities": int(len(np.unique(labels))),
            "score_norm": self.cohort is not None,
            "data": str(directory),
        }

    def cluster(
        self, directory: PathLike, n_clusters: int | None = None, method: str = "agglomerative"
    ) -> dict[int, list[pathlib.Path]]:
        """Group the photos of ``directory`` by the person in them.

        Args:
            directory: folder of photos (searched recursively).
            n_clusters: number of people; ``None`` lets agglomerative
                clustering cut the tree at ``self.threshold``.
            method: ``"agglomerative"`` or ``"kmeans"`` (needs ``n_clusters``).

        Returns:
            ``{cluster id: [paths]}``, largest cluster first. Photos with no
            face are skipped with a warning.
        """
        candidates = list_images(directory)
        embeddings, kept = self.embed_files(candidates)
        paths = [candidates[k] for k in kept]
        if len(paths) < 2:
            raise ValueError(f"Need at least 2 faces to cluster in {str(directory)!r}")
        labels = cluster_embeddings(
            embeddings, n_clusters, method, self.threshold, self.metric, self.cohort
        )
        groups: dict[int, list[pathlib.Path]] = {}
        for label, path in zip(labels, paths):
            groups.setdefault(int(label), []).append(path)
        ordered = sorted(groups.values(), key=len, reverse=True)
        return {i: members for i, members in enumerate(ordered)}


def cluster_embeddings(
    embeddings: np.ndarray,
    n_clusters: int | None,
    method: str = "agglomerative",
    threshold: float = 1.0,
    metric: str = "L2",
    cohort: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster labels of embeddings; with ``n_clusters=None``, cut at ``threshold``.

    With a ``cohort``, agglomerative clustering runs on the S-normalised
    distances (``fsl.evaluation.s_norm_cross_distances``) and ``threshold``
    is on that scale; k-means always works on the embeddings themselves.
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans

    if method not in CLUSTER_METHODS:
        raise ValueError(f"method must be 'agglomerative' or 'kmeans'. Received: method={method!r}")
    if n_clusters is not None and not 1 <= n_clusters <= len(embeddings):
        raise ValueError(
            f"n_clusters must be in [1, {len(embeddings)}]. Received: n_clusters={n_clusters}"
        )
    if method == "kmeans":
        if n_clusters is None:
            raise ValueError("method='kmeans' needs n_clusters. Received: n_clusters=None")
        return KMeans(n_clusters, n_init=10, random_state=0).fit_predict(embeddings)
    if cohort is not None:
        return _cluster_s_norm(embeddings, n_clusters, threshold, metric, cohort)
    sk_metric = "cosine" if metric == "angular" else "euclidean"
    if n_clusters is None:
        cut = threshold if metric != "squared-L2" else float(np.sqrt(threshold))
        model = AgglomerativeClustering(
            n_clusters=None, distance_threshold=cut, metric=sk_metric, linkage="average"
        )
    else:
        model = AgglomerativeClustering(n_clusters=n_clusters, metric=sk_metric, linkage="average")
    return model.fit_predict(embeddings)


def _cluster_s_norm(embeddings, n_clusters, threshold, metric, cohort) -> np.ndarray:
    """Average-linkage clustering on S-normalised distances."""
    from sklearn.cluster import AgglomerativeClustering

    from fsl.evaluation.verification import s_norm_cross_distances

    distances = s_norm_cross_distances(embeddings, embeddings, cohort, metric)
    distances = (distances + distances.T) / 2  # symmetric up to rounding
    off_diagonal = ~np.eye(len(distances), dtype=bool)
    # S-norm distances can be negative; average linkage commutes with a
    # constant shift, so shift them to >= 0 (and the cut with them).
    lowest = float(distances[off_diagonal].min()) if len(distances) > 1 else 0.0
    shifted = np.where(off_diagonal, distances - lowest, 0.0)
    if n_clusters is not None:
        model = AgglomerativeClustering(
            n_clusters=n_clusters, metric="precomputed", linkage="average")
    else:
        cut = float(threshold) - lowest
        if cut <= 0:  # no pair is close enough: every face is its own cluster
            return np.arange(len(distances))
        model = AgglomerativeClustering(
            n_clusters=None, distance_threshold=cut, metric="precomputed", linkage="average")
    return model.fit_predict(shifted)


def save_cluster_grids(
    groups: dict[int, list[pathlib.Path]], out_dir: PathLike, thumb: int = 96, columns: int = 8,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Write one grid image per cluster (``cluster_000.png``, ...) into ``out_dir``.

    Raises:
        FileExistsError: if ``out_dir`` already holds files and not ``overwrite``.
    """
    from PIL import Image

    out = pathlib.Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"Output folder {str(out)!r} is not empty; pass overwrite=True (--overwrite) to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cluster_id, paths in groups.items():
        rows = (len(paths) + columns - 1) // columns
        grid = Image.new("RGB", (thumb * min(columns, len(paths)), thumb * rows), "white")
        for i, path in enumerate(paths):
            with Image.open(path) as im:
                tile = im.convert("RGB").resize((thumb, thumb))
            grid.paste(tile, ((i % columns) * thumb, (i // columns) * thumb))
        target = out / f"cluster_{cluster_id:03d}.png"
        grid.save(target)
        written.append(target)
    return written


