"""Convert VGG-Face, as its authors publish it, into the backbone weights file the
workflow starts from (README.md, "Starting from VGG-Face"). Run once:

    .venv/bin/python tools/convert_vggface.py vgg_face_matconvnet/data/vgg_face.mat \
        resources/vgg_face.pt

SOURCE is the MatConvNet release (vgg_face.mat, or vgg-face.mat of MatConvNet's model
zoo) or the Torch release (VGG_FACE.t7). The work is traitlens.models.vggface.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts"))

from traitlens.core.errors import UserError  # noqa: E402
from traitlens.models.vggface import convert_vgg_face  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="vgg_face.mat (MatConvNet) or VGG_FACE.t7 (Torch)")
    parser.add_argument("output", help="the converted file, e.g. resources/vgg_face.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        written = convert_vgg_face(args.source, args.output)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    expects = written["input"]
    print(
        f"{args.output}: VGG-Face's 13 conv layers from {written['source']['format']} "
        f"({written['source']['channels']} input, now RGB). Its filters expect "
        f"models.visual.mean_rgb {expects['mean_rgb']} and input_scale "
        f"{expects['input_scale']}; name the file in models.visual.weights."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
