"""A gallery of embeddings that persists and searches: the search engine's core.

``Gallery`` (people, photos, top-k search with a known/unknown decision) in
a SQLite file that records the model it belongs to; ``model_card(run)``
says which model that is; ``fsl.index.search`` holds the search backends.
"""

from fsl.index.gallery import (
    BACKENDS,
    MAX_NAME,
    Gallery,
    Match,
    ModelMismatchError,
    SearchResult,
    check_person,
    model_card,
)

__all__ = ["BACKENDS", "MAX_NAME", "Gallery", "Match", "ModelMismatchError", "SearchResult",
           "check_person", "model_card"]
