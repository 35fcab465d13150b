"""The search engine's web app: a page and a JSON API over a ``fsl.index.Gallery``.

``create_app(run, db)`` builds a FastAPI application (served by uvicorn with
``fsl serve``): FastAPI because it validates uploads and forms, documents
the API on its own OpenAPI page (``/docs``) and ships a test client; the
page is plain HTML, CSS and JavaScript in ``fsl/serve/static`` (no CDN:
it works offline).

API (``/api``): ``GET /people``, ``GET /items``, ``GET /items/{id}/thumbnail``,
``POST /search`` (a photo: the k nearest items, distances, the known/unknown
decision, the query's place on the map), ``POST /enrol`` (a photo and a
name), ``DELETE /items/{id}``, ``DELETE /people/{name}``, ``GET /map`` (the
gallery's PCA). Writes need the token when the app has one (header
``X-FSL-Token``). Bad input is a 4xx answer with a ``detail`` message and
nothing stored: a non-image (400), no face (422), a file over the limit or
with too many pixels (413), a bad name (400), a wrong token (401).
Uploads are read in memory, never written to a shared file.
"""


import contextlib
import hmac
import logging
import pathlib
import threading
from typing import Annotated, Any

import numpy as np

from fsl._checks import PathLike
from fsl.serve.uploads import MAX_UPLOAD_BYTES, UploadError, read_upload, thumbnail

logger = logging.getLogger(__name__)

STATIC = pathlib.Path(__file__).parent / "static"


class SearchEngine:
    """A run's ``FacePipeline`` and a ``Gallery``: photos in, people out.

    Args:
        run: the run folder of the embedding model.
        db: the gallery's SQLite file (created for this run if absent).
        detect_faces: ``None``: as the run was trained; ``False``: every
            photo is one image (digits, dogs, products).
        backend: the gallery's search backend.
    """

    def __init__(self, run: PathLike, db: PathLike, detect_faces: bool | None = None,
                 backend: str = "exact"):
        from fsl.faces.pipeline import FacePipeline
        from fsl.index import Gallery, model_card

        overrides = {} if detect_faces is None else {"detect_faces": detect_faces}
        self.pipeline = FacePipeline.from_run(run, **overrides)
        self.gallery = Gallery(db, model_card(run), backend=backend)
        self._model_lock = threading.Lock()  # one model call at a time
        self._map_lock = threading.Lock()
        self._map: tuple[int, dict] | None = None

    def embed(self, pixels: np.ndarray) -> tuple[np.ndarray, bytes, bool | None]:
        """(embedding, thumbnail JPEG, in domain) of the largest face of a photo.

        Raises:
            fsl.faces.NoFaceError: no face in the photo.
        """
        with self._model_lock:
            embedding, known, face = self.pipeline.embed_largest_face(pixels)
        return embedding, thumbnail(pixels, None if face is None else face.box), known

    def enrol(self, pixels: np.ndarray, name: str, source: str | None = None
              ) -> tuple[int, bool | None]:
        """Add the photo's largest face as ``name``; returns (item id, in domain).

        Raises:
            ValueError: a bad name (checked before the model runs).
            fsl.faces.NoFaceError: no face in the photo.
        """
        from fsl.index import check_person

        name = check_person(name)
        embedding, thumb, known = self.embed(pixels)
        item = self.gallery.add(embedding[None], [name], sources=[source], thumbnails=[thumb])[0]
        return item, known

    def enrol_folder(self, folder: PathLike, report_every: int = 10) -> int:
        """Enrol every photo of ``folder`` (one sub-folder per person), logging
        progress and skipping (with a warning naming it) what cannot be enrolled."""
        from fsl.faces.pipeline import NoFaceError, list_images

        root = pathlib.Path(folder)
        photos = [p for p in list_images(root) if p.parent != root]
        done = 0
        for index, path in enumerate(photos, start=1):
            try:
                self.enrol(read_upload(path.read_bytes(), str(path)), path.parent.name, str(path))
                done += 1
            except (UploadError, NoFaceError, ValueError) as error:
                logger.warning("Skipping %s: %s", path, error)
            if index % report_every == 0 or index == len(photos):
                logger.warning("Enrolled %d of %d photos from %s", done, len(photos), root)
        return done

    def map(self) -> dict[str, Any]:
        """The gallery in 2-D (PCA of its embeddings): points, people, and the
        projection; recomputed only after the gallery changed."""
        with self._map_lock:
            if self._map is None or self._map[0] != self.gallery.version:
                self._map = (self.gallery.version, self._compute_map())
            return self._map[1]

    def _compute_map(self) -> dict[str, Any]:
        ids, vectors, people = self.gallery.embeddings()
        if len(ids) < 2:
            return {"points": [], "mean": None, "axes": None}
        mean = vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        axes = vt[:2] if len(vt) >= 2 else np.vstack([vt, np.zeros_like(vt)])
        xy = (vectors - mean) @ axes.T
        return {"points": [{"id": int(i), "person": p, "x": float(x), "y": float(y)}
                           for i, p, (x, y) in zip(ids, people, xy, strict=True)],
                "mean": mean, "axes": axes}


def create_app(run: PathLike, db: PathLike, token: str | None = None,
               detect_faces: bool | None = None, backend: str = "exact",
               max_upload_bytes: int = MAX_UPLOAD_BYTES, gallery_dir: PathLike | None = None,
               calibrate: bool = False, far_target: float | None = None):
    """The FastAPI application of ``fsl serve``.

    Args:
        run: the run folder of the embedding model.
        db: the gallery's SQLite file.
        token: when given, enrol and delete need it (header ``X-FSL-Token``).
        detect_faces: ``None``: as the run was trained; ``False``: whole images.
        backend: ``"exact"`` or ``"approximate"``.
        max_upload_bytes: the upload limit.
        gallery_dir: a folder of people to enrol at start.
        calibrate: at start (after ``gallery_dir``), choose the gallery's own
            threshold (``fsl.index.Gallery.calibrate``).
        far_target: ``calibrate``'s false accept target (``None``: the most
            correct answers).

    Returns:
        A ``fastapi.FastAPI``; its ``state.engine`` is the ``SearchEngine``.
    """
    from fastapi import FastAPI, File, Form, Header, HTTPException, UploadFile
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles

    from fsl.faces.pipeline import NoFaceError

    engine = SearchEngine(run, db, detect_faces=detect_faces, backend=backend)
    if gallery_dir is not None:
        engine.enrol_folder(gallery_dir)
    if calibrate:
        report = engine.gallery.calibrate(far_target=far_target)
        print(f"Gallery threshold {report['threshold']:.4f} (run's "
              f"{report['at_threshold']['threshold']:.4f}): strangers let in "
              f"{report['false_accept_rate']:.1%} (run's "
              f"{report['at_threshold']['false_accept_rate']:.1%}), own photos rejected "
              f"{report['false_reject_rate']:.1%} ({report['at_threshold']['false_reject_rate']:.1%})",
              flush=True)
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        # On shutdown an approximate gallery saves its graph beside the SQLite
        # file, so the next start loads it instead of rebuilding it. (The file
        # stays open: the same app may serve again.)
        try:
            engine.gallery.save_graph()
        except OSError as error:
            logger.warning("Could not save the search graph: %s", error)

    app = FastAPI(title="fsl search", description=__doc__.split("\n\n")[0],
                  openapi_url="/api/openapi.json", docs_url="/docs", lifespan=lifespan)
    app.state.engine = engine

    def check_token(given: str | None) -> None:
        if token is not None and not hmac.compare_digest(given or "", token):
            raise HTTPException(401, "this server needs its token for writes (X-FSL-Token)")

    async def read(upload: UploadFile) -> np.ndarray:
        data = await upload.read(max_upload_bytes + 1)
        try:
            return read_upload(data, upload.filename or "upload", max_bytes=max_upload_bytes)
        except UploadError as error:
            raise HTTPException(error.status, str(error)) from None

    def embed(pixels: np.ndarray):
        try:
            return engine.embed(pixels)
        except NoFaceError as error:
            raise HTTPException(422, str(error)) from None

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health() -> dict:
        """The model, the gallery's size and the threshold it decides with."""
        gallery = engine.gallery
        return {"model": gallery.model["name"], "items": len(gallery),
                "threshold": gallery.threshold, "threshold_source": gallery.threshold_source,
                "metric": gallery.metric}

    @app.post("/api/calibrate")
    def calibrate(far_target: Annotated[float | None, Form()] = None,
                  x_fsl_token: Annotated[str | None, Header()] = None) -> dict:
        """Choose the gallery's own identification threshold by rehearsing with
        its photos (each searched as a known person and as a stranger); with
        ``far_target``, the loosest one that lets at most that share of
        strangers in. Returns the rehearsal's rates (at the run's threshold
        too)."""
        check_token(x_fsl_token)
        try:
            return engine.gallery.calibrate(far_target=far_target)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    @app.delete("/api/calibrate")
    def use_run_threshold(x_fsl_token: Annotated[str | None, Header()] = None) -> dict:
        """Decide with the run's threshold again."""
        check_token(x_fsl_token)
        engine.gallery.use_run_threshold()
        return {"threshold": engine.gallery.threshold, "threshold_source": "run"}

    @app.get("/api/people")
    def people() -> dict:
        """Each person's name and number of photos."""
        return engine.gallery.people()

    @app.get("/api/items")
    def items(person: str | None = None) -> list:
        """The gallery's items, of one person or all."""
        return engine.gallery.items(person)

    @app.get("/api/items/{item_id}/thumbnail")
    def item_thumbnail(item_id: int):
        data = engine.gallery.thumbnail(item_id)
        if data is None:
            raise HTTPException(404, f"no thumbnail for item {item_id}")
        return Response(data, media_type="image/jpeg")

    @app.post("/api/search")
    async def search(photo: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 5) -> dict:
        """The k nearest gallery items of the photo's largest face, and the decision."""
        if not 1 <= k <= 100:
            raise HTTPException(400, f"k must be 1..100. Received: k={k}")
        embedding, _, known = embed(await read(photo))
        result = engine.gallery.search(embedding[None], k=k)[0].to_dict()
        drawn = engine.map()
        if drawn["axes"] is not None:
            x, y = (embedding - drawn["mean"]) @ drawn["axes"].T
            result["map"] = {"x": float(x), "y": float(y)}
        result["in_domain"] = known
        return result

    @app.post("/api/enrol")
    async def enrol(photo: Annotated[UploadFile, File()], name: Annotated[str, Form()],
                    x_fsl_token: Annotated[str | None, Header()] = None) -> dict:
        """Add the photo's largest face to the gallery as ``name``."""
        check_token(x_fsl_token)
        from fsl.index import check_person

        try:
            name = check_person(name)  # a 400 before the upload is read
            item, known = engine.enrol(await read(photo), name, photo.filename)
        except NoFaceError as error:
            raise HTTPException(422, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"item_id": item, "person": name, "in_domain": known}

    @app.delete("/api/items/{item_id}")
    def delete_item(item_id: int, x_fsl_token: Annotated[str | None, Header()] = None) -> dict:
        check_token(x_fsl_token)
        if engine.gallery.remove(item_ids=[item_id]) == 0:
            raise HTTPException(404, f"no item {item_id}")
        return {"deleted": 1}

    @app.delete("/api/people/{name}")
    def delete_person(name: str, x_fsl_token: Annotated[str | None, Header()] = None) -> dict:
        check_token(x_fsl_token)
        try:
            removed = engine.gallery.remove(person=name)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        if removed == 0:
            raise HTTPException(404, f"no person {name!r}")
        return {"deleted": removed}

    @app.get("/api/map")
    def gallery_map() -> dict:
        """The gallery's embeddings in 2-D (PCA), one point per item."""
        return {"points": engine.map()["points"]}

    return app


__all__ = ["STATIC", "SearchEngine", "create_app"]
