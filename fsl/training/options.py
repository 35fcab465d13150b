"""``RunOptions``: the run-control arguments every trainer takes.

Where a run goes and how it runs, as opposed to what it trains: the output
folder and run name, overwrite / resume, a fast smoke run, XLA, the
mixed-precision policy, verbosity and extra callbacks. Every trainer takes
them as keyword arguments (``train_facenet(data, run="orl", overwrite=True)``)
and gathers them here, so they are written, validated and documented once.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from fsl import runs
from fsl._checks import check_bool
from fsl.training.distribution import (
    check_distribution,
    distributed,
    join_processes,
    process_count,
    process_index,
    process_run_name,
    share_batches,
    synchronized_batch_norm,
)
from fsl.training.multi_worker import fit_fixes

logger = logging.getLogger(__name__)

#: The run folder the current trainer call started (``RunOptions.start``).
_ACTIVE_RUN: contextvars.ContextVar[runs.RunDir | None] = contextvars.ContextVar(
    "fsl_active_run", default=None)


def guard_run(trainer):
    """Decorate a trainer: if it dies after starting its run folder, the run is
    marked ``failed`` with the error (``fsl.runs.fail_run``) and its lock
    dropped; the exception goes on."""

    @functools.wraps(trainer)
    def wrapper(*args, **kwargs):
        token = _ACTIVE_RUN.set(None)
        try:
            return trainer(*args, **kwargs)
        except BaseException as error:
            run_dir = _ACTIVE_RUN.get()
            if run_dir is not None:
                runs.fail_run(run_dir, error)
            raise
        finally:
            run_dir = _ACTIVE_RUN.get()
            if run_dir is not None:
                run_dir.release()
            _ACTIVE_RUN.reset(token)

    return wrapper

def check_jit(jit_compile: Any) -> bool | str:
    if jit_compile not in (True, False, "auto"):
        raise ValueError(
            f"jit_compile must be True, False or 'auto'. Received: jit_compile={jit_compile!r}"
        )
    return jit_compile


def _tf_has_accelerator() -> bool:
    import tensorflow as tf

    return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())


def resolve_jit(model: keras.Model, jit_compile: bool | str = "auto") -> bool:
    """Whether to compile the train step with XLA.

    ``"auto"``: yes on JAX, and on TensorFlow with a GPU/TPU; no on a
    CPU-only TensorFlow (where the XLA compile time outweighs its gain in
    a short run, as Keras's own ``"auto"`` decides). ``True``: yes where the
    backend allows. In both cases, no on torch or when a layer of the model
    says it does not support XLA (``layer.supports_jit``): the model is then
    compiled without XLA and the reason is logged.
    """
    if jit_compile is False:
        return False
    backend = keras.backend.backend()
    if backend == "torch":
        logger.info("jit_compile disabled: not supported by the torch backend here")
        return False
    if jit_compile == "auto" and backend == "tensorflow" and not _tf_has_accelerator():
        logger.info("jit_compile disabled: TensorFlow on CPU only (pass jit_compile=True to force)")
        return False
    unsupported = [layer.name for layer in model._flatten_layers() if not layer.supports_jit]
    if unsupported:
        logger.info("jit_compile disabled: layers without XLA support: %s", unsupported)
        return False
    return True


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The run-control arguments of a trainer.

    Args:
        output_dir: parent folder of the run folder (default ``./saved_models``).
        run: run folder name (default ``<task>-<timestamp>``).
        overwrite: replace an existing run folder.
        resume: continue an interrupted run from its checkpoint (``fsl.checkpoint``), with the
            arguments it started with (another value of one that changes what
            is trained, e.g. ``margin`` or ``epochs``, raises ``ValueError``;
            ``verbose`` and ``jit_compile`` may change).
        fast: a smoke run of seconds (tiny data, 1 epoch), not quality.
        jit_compile: ``"auto"`` (XLA where it pays off and every layer
            supports it), True or False.
        mixed_precision: ``None`` / ``"float32"``, ``"mixed_float16"`` or
            ``"mixed_bfloat16"``: the Keras dtype policy the model is built
            under (16-bit compute, float32 weights, outputs and losses;
            ``"mixed_float16"`` adds loss scaling).
        distribution: ``None`` (one device), ``"mirrored"``,
            ``"multi-worker"`` or ``"jax-data-parallel"``: the framework's
            data-parallel engine the model is built and trained under
            (``fsl.training.distribution``; several processes:
            ``"multi-worker"`` with ``TF_CONFIG``, or ``"jax-data-parallel"``
            with ``keras.distribution``'s environment variables); ``resume``
            accepts another one.
        verbose: Keras ``fit`` verbosity; 0 also silences the summary line.
        callbacks: extra Keras callbacks for ``fit``.

    Raises:
        ValueError: a bad ``jit_compile`` or ``mixed_precision``.
        TypeError: a flag that is not a bool.
    """

    output_dir: str | os.PathLike | None = None
    run: str | None = None
    overwrite: bool = False
    resume: bool = False
    fast: bool = False
    jit_compile: bool | str = "auto"
    mixed_precision: str | None = None
    distribution: str | None = None
    verbose: int | str = "auto"
    callbacks: Sequence[keras.callbacks.Callback] | None = None

    def __post_init__(self):
        for flag in ("overwrite", "resume", "fast"):
            check_bool(flag, getattr(self, flag))
        check_jit(self.jit_compile)
        object.__setattr__(self, "mixed_precision", runs.check_precision(self.mixed_precision))
        check_distribution(self.distribution)
        join_processes(self.distribution)

    @classmethod
    def from_kwargs(cls, trainer: str, kwargs: Mapping[str, Any]) -> RunOptions:
        """The options of a trainer's ``**run_options``; an unknown name is the
        ``TypeError`` Python gives for an unexpected keyword argument."""
        names = {field.name for field in dataclasses.fields(cls)}
        for key in kwargs:
            if key not in names:
                raise TypeError(
                    f"{trainer}() got an unexpected keyword argument {key!r} "
                    f"(run options: {', '.join(sorted(names))})"
                )
        return cls(**kwargs)

    def arguments(self) -> dict[str, Any]:
        """What ``config.json`` records of the options (all but callbacks)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name != "callbacks"}

    # === The run's life ===

    def start(self, task: str, arguments: Mapping[str, Any]) -> runs.RunDir:
        """Create (or reopen, to resume) the run folder; write ``config.json``
        with the trainer's ``arguments`` and these options."""
        run_dir = runs.start_run(task, {**arguments, **self.arguments()}, self.output_dir,
                                 process_run_name(self.run), self.overwrite, self.resume)
        _ACTIVE_RUN.set(run_dir)
        return run_dir

    @contextlib.contextmanager
    def dtype_policy(self):
        """The context in which the run's models are built: ``mixed_precision``
        and the ``distribution`` engine."""
        with runs.dtype_policy(self.mixed_precision), self.distributed():
            yield

    def distributed(self):
        """The ``distribution`` engine's context (build, compile, fit)."""
        return distributed(self.distribution)

    def compile(self, model: keras.Model, **compile_kwargs: Any) -> None:
        """``model.compile`` with XLA decided by ``resolve_jit``, in the
        ``distribution`` engine."""
        with self.distributed():
            optimizer = compile_kwargs.get("optimizer")
            if self.distribution is not None and isinstance(optimizer, keras.optimizers.Optimizer):
                # Its variables (the step counter already) belong to the engine: a copy
                # made inside it.
                compile_kwargs["optimizer"] = keras.optimizers.deserialize(
                    keras.optimizers.serialize(optimizer))
            model.compile(jit_compile=resolve_jit(model, self.jit_compile), **compile_kwargs)

    def fit(self, model: keras.Model, dataset, epochs: int, run_dir: runs.RunDir,
            **fit_kwargs: Any) -> tuple[dict[str, list[float]], float]:
        """``model.fit`` with the run's callbacks; returns (full history, seconds).

        The history covers every epoch of the run, including those trained
        before an interruption (read back from ``history.csv``).
        """
        start = time.perf_counter()
        mended = contextlib.nullcontext()
        if self.distribution == "multi-worker":
            dataset, mended = share_batches(dataset), fit_fixes(model)
        with self.distributed(), synchronized_batch_norm(model, self.distribution), mended:
            try:
                model.fit(
                    dataset,
                    epochs=epochs,
                    callbacks=run_dir.callbacks(self.callbacks),
                    verbose=self.verbose,
                    shuffle=False,  # tf.data pipelines shuffle (or draw) their own batches
                    **fit_kwargs,
                )
            except Exception as error:
                if process_count() > 1:
                    error.add_note(
                        f"fsl: training process {process_index()} of {process_count()}: if "
                        "another process stopped, this one fails in its next collective "
                        "operation; start them all again with resume=True (--resume).")
                raise
        return run_dir.history(), time.perf_counter() - start

    def echo(self, message: str) -> None:
        """Print a summary line unless ``verbose == 0``."""
        if self.verbose != 0:
            print(message, flush=True)
