"""Classify images with MediaPipe Tasks' ImageClassifier; print one JSON object on stdout.

Runs in its own venv (`make .venv-mediapipe`: mediapipe pins a protobuf TensorFlow's cannot share
a venv with), started by tests/test_mobile.py:

    .venv-mediapipe/bin/python tests/mediapipe_classify.py MODEL.tflite IMAGE...
    .venv-mediapipe/bin/python tests/mediapipe_classify.py --metadata MODEL.tflite

The classifier is configured by nothing but the model file: its TFLite Metadata gives the
normalization, the input size and the label file, as on Android, iOS and the Web (same C++ core).
Output: {"mediapipe": version, "results": [{"image", "categories": [{"index", "name", "score"}]}]}
or {"error": message} (exit status 1) when MediaPipe refuses the model.
--metadata: the TFLITE_METADATA buffer decoded by MediaPipe's own generated schema code
(mediapipe/tasks/metadata/*_py_generated.py, object API) as {"metadata": {...}}: a second,
independent reader of what vitedge writes.
"""

import json
import sys


def _plain(value):
    """Object-API tables -> JSON-able dicts (numpy arrays -> lists, bytes -> str)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if v is not None}
    return value


def metadata(model):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta_fb
    from mediapipe.tasks.metadata import schema_py_generated as tflite_fb

    data = open(model, "rb").read()
    tflite = tflite_fb.Model.GetRootAsModel(data, 0)
    for i in range(tflite.MetadataLength()):
        entry = tflite.Metadata(i)
        if entry.Name() == b"TFLITE_METADATA":
            buf = tflite.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            assert meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0), "no M001 identifier"
            root = meta_fb.ModelMetadata.GetRootAsModelMetadata(buf, 0)
            return {"metadata": _plain(meta_fb.ModelMetadataT.InitFromObj(root))}
    return {"metadata": None}


def main(argv):
    if argv[:1] == ["--metadata"]:
        print(json.dumps(metadata(argv[1])))
        return 0
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    model, images = argv[0], argv[1:]
    options = vision.ImageClassifierOptions(base_options=mp_tasks.BaseOptions(model_asset_path=model),
                                            max_results=-1)  # every class, best first
    try:
        classifier = vision.ImageClassifier.create_from_options(options)
    except Exception as exc:  # MediaPipe's own message, e.g. missing NormalizationOptions
        print(json.dumps({"error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}))
        return 1
    results = []
    with classifier:
        for path in images:
            result = classifier.classify(mp.Image.create_from_file(path))
            head = result.classifications[0]
            results.append({"image": path, "head": head.head_name,
                            "categories": [{"index": c.index, "name": c.category_name, "score": c.score}
                                           for c in head.categories]})
    print(json.dumps({"mediapipe": getattr(mp, "__version__", "?"), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
