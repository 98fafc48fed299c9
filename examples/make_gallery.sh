#!/usr/bin/env bash
# Render the README gallery (docs/img/gallery_*.png) by running the examples.
#
#   examples/make_gallery.sh                              # faces: the embedded faces model; scenes: demo
#   FACE_NETWORK=ffhq LOSS=lpips+mse STEPS=500 DEVICE=cuda examples/make_gallery.sh
#
# Settings (environment): FACE_NETWORK (default: faces, embedded, with its shipped direction
# bank), SCENE_NETWORK (default: demo), DEVICE (auto), STEPS (encoding steps, 500),
# LOSS (mse: no download; lpips+mse needs the VGG weights), SAMPLES (attribute fit for a
# network without a shipped bank, 512), PYTHON (.venv/bin/python when present, else python3),
# OUT (docs/img). The faces are the astronaut (public domain, shipped in the package).
set -euo pipefail
cd "$(dirname "$0")/.."

FACE_NETWORK=${FACE_NETWORK:-faces}
SCENE_NETWORK=${SCENE_NETWORK:-demo}
DEVICE=${DEVICE:-auto}
STEPS=${STEPS:-500}
LOSS=${LOSS:-mse}
SAMPLES=${SAMPLES:-512}
OUT=${OUT:-docs/img}
[ -x .venv/bin/python ] && default_python=.venv/bin/python || default_python=python3
PYTHON=${PYTHON:-$default_python}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

run() {  # run EXAMPLE ARGS...: outputs go to $work/EXAMPLE
    local name=$1
    shift
    "$PYTHON" "examples/$name.py" --device "$DEVICE" --outdir "$work/$name" "$@"
}

run multi_face --network "$FACE_NETWORK" --seeds 0-5 --rows 2
run three_eyes --network "$FACE_NETWORK" --steps "$STEPS" --loss "$LOSS"
run edit_attributes --network "$FACE_NETWORK" --steps "$STEPS" --loss "$LOSS" --samples "$SAMPLES"
run extended_scene --network "$SCENE_NETWORK" --size 2048x512

cp "$work/multi_face/multi_face.png" "$OUT/gallery_six_faces.png"
cp "$work/three_eyes/three_eyes.png" "$OUT/gallery_three_eyes.png"
cp "$work/edit_attributes/strip.png" "$OUT/gallery_edit_strip.png"
# The panorama as JPEG: a 2048x512 PNG of texture is a few megabytes.
"$PYTHON" -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=88)" \
    "$work/extended_scene/scene.png" "$OUT/gallery_scene.jpg"
echo "wrote $(ls "$OUT"/gallery_* | tr '\n' ' ')"
