"""Scrub the committed outputs of the notebooks: no machine paths, no TensorFlow log lines.

Run after executing the notebooks in full and before committing them::

    python tools/scrub_notebook_outputs.py notebooks/*.ipynb

In every text output, TensorFlow's and absl's start-up lines are dropped and
absolute paths of the machine that ran them are written as the variables a
reader has: ``$TMPDIR/...`` for temporary folders, ``$FSL_DATA_DIR/...`` for
the data folder, ``$FSL_SHARED_DIR/...`` for the shared folder, ``~/...`` for
the home folder. ``tests/test_notebooks.py``
checks that the committed notebooks are scrubbed.
"""

from __future__ import annotations

import json
import re
import sys

#: TensorFlow / absl start-up and device lines (C++ logging, oneDNN, CUDA).
TF_LOG = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|[IWEF]0000 )|absl::InitializeLog|oneDNN custom operations"
    r"|cuda drivers|cuInit|TensorFlow binary is optimized|To enable the following instructions"
    r"|rebuild TensorFlow with the appropriate")
#: Absolute paths of the machine, and what they become.
PATHS = [
    (re.compile(r"/work/shared/data(?=/|\b)"), "$FSL_DATA_DIR"),
    (re.compile(r"/(?:work|home/[^/\s]+)/[^\s'\",)\]]*?/shared/data(?=/|\b)"), "$FSL_DATA_DIR"),
    (re.compile(r"/work/shared(?=/)"), "$FSL_SHARED_DIR"),
    (re.compile(r"/tmp(?=/)"), "$TMPDIR"),
    (re.compile(r"/root(?=/)"), "~"),
    (re.compile(r"/home/[^/\s]+(?=/)"), "~"),
]
#: What a scrubbed output must not contain.
MACHINE_PATH = re.compile(r"(?<![\w$~.])/(?:tmp|work|root|home)/")


def scrub_text(text: str) -> str:
    lines = [line for line in text.splitlines(keepends=True) if not TF_LOG.search(line)]
    text = "".join(lines)
    for pattern, replacement in PATHS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_source(value):
    text = value if isinstance(value, str) else "".join(value)
    return scrub_text(text).splitlines(keepends=True)


def scrub_notebook(notebook: dict) -> dict:
    for cell in notebook.get("cells", []):
        outputs = []
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = _scrub_source(output["text"])
                if not "".join(output["text"]).strip():
                    continue  # a stream that held only log lines
            for key, value in output.get("data", {}).items():
                if key.startswith("text/"):
                    output["data"][key] = _scrub_source(value)
            outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs
    return notebook


def main(paths: list[str]) -> int:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            notebook = json.load(handle)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(scrub_notebook(notebook), handle, indent=1, ensure_ascii=False)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
