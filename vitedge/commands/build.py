"""`vitedge build`: a ViT from a named variant or custom dimensions, saved as .keras; or from
pretrained weights on disk (--weights: Hugging Face, timm, Google .npz; see vitedge/importers)."""

import json
import time

import click

from ..errors import UsageError, VitedgeError
from ..fileio import check_writable
from ..modelfile import ModelSpec, read_labels_file, read_spec, validate_labels
from ..preprocess import Preprocessing
from ..variants import DEFAULT_VARIANT, VARIANTS, variant_config


@click.command()
@click.option("--variant", "-v", default=None, metavar="NAME",
              help=f"Named variant ({', '.join(VARIANTS)}). Default: {DEFAULT_VARIANT}. With --weights "
                   "(timm), the variant or timm model name that fixes the number of heads.")
@click.option("--weights", default=None, metavar="PATH",
              help="Import pretrained weights: a Hugging Face ViT folder, a timm state dict (.safetensors/.pth) "
                   "or a Google .npz checkpoint. Local files only; the variant is read from the tensor shapes.")
@click.option("--format", "weights_format", type=click.Choice(["auto", "hf", "timm", "npz"]), default="auto",
              show_default=True, help="Checkpoint format with --weights.")
@click.option("--from-model", "from_model", type=click.Path(dir_okay=False), default=None,
              help="Rebuild an existing .keras model (e.g. at another --image-size; position embeddings are interpolated).")
@click.option("--image-size", default=None, metavar="S|HxW", help="Input size, e.g. 224 or 384x384.")
@click.option("--num-classes", type=int, default=None, help="Classes of the linear head.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False), default=None,
              help="Text file with one class name per line (sets --num-classes).")
@click.option("--patch-size", type=int, default=None, help="Patch size P (custom dimensions).")
@click.option("--width", type=int, default=None, help="Embedding width D.")
@click.option("--depth", type=int, default=None, help="Number of encoder blocks L.")
@click.option("--heads", type=int, default=None, help="Attention heads (width must divide by it).")
@click.option("--mlp-dim", type=int, default=None, help="MLP hidden width (default 4x width for custom widths).")
@click.option("--dropout", type=float, default=None, help="Dropout after embeddings, attention output and MLP.")
@click.option("--attention-dropout", type=float, default=None, help="Dropout on attention weights.")
@click.option("--gelu", type=click.Choice(["erf", "tanh"]), default=None, help="Exact (erf) or tanh GELU.")
@click.option("--interpolation", type=click.Choice(["bilinear", "bicubic"]), default=None,
              help="Position-embedding resize method. --from-model: TensorFlow's, default bilinear. --weights: "
                   "default the source framework's own (HF: PyTorch bicubic; timm: antialiased bicubic; "
                   "Google: corner-aligned linear); bicubic here means PyTorch's.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weight initialisation seed.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Output .keras file.")
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def build(variant, weights, weights_format, from_model, image_size, num_classes, labels_file, patch_size, width,
          depth, heads, mlp_dim, dropout, attention_dropout, gelu, interpolation, seed, output, force, as_json):
    """Build a ViT with random weights, import pretrained ones (--weights), or rebuild one at another size.

    \b
    Examples:
      vitedge build --variant vit-ti16 -o vit-ti16.keras
      vitedge build --variant vit-b16 --image-size 384 --labels labels.txt -o vit-b16-384.keras
      vitedge build --variant seed --width 128 --heads 8 -o custom.keras
      vitedge build --from-model vit-ti16.keras --image-size 320 -o vit-ti16-320.keras
      vitedge build --weights ./vit-base-patch16-224 -o vit-b16.keras   # HF folder
      vitedge build --weights vit_small.safetensors --variant vit_small_patch16_224 -o s.keras   # timm
      vitedge build --weights ViT-B_16.npz --num-classes 10 --image-size 384 -o b16-384.keras   # Google
    """
    if not output.endswith(".keras"):
        raise UsageError(f"--output {output}: must end in .keras")
    check_writable(output, force)
    labels = read_labels_file(labels_file) if labels_file else None
    if labels is not None:
        if num_classes is not None and num_classes != len(labels):
            raise UsageError(f"--num-classes {num_classes} but {labels_file} has {len(labels)} labels")
        num_classes = len(labels)

    if weights_format != "auto" and not weights:
        raise UsageError("--format applies to --weights")
    if weights:
        if from_model or any(v is not None for v in (patch_size, width, depth, mlp_dim, dropout, attention_dropout,
                                                     gelu)):
            raise UsageError("--weights reads the architecture from the checkpoint; only --variant/--heads "
                             "(timm), --num-classes, --labels and --image-size may be given")
        from ..importers import import_checkpoint
        from ..modelfile import save_model

        model, spec, notes = import_checkpoint(
            weights, weights_format, variant=variant, heads=heads, num_classes=num_classes, labels=labels,
            image_size=image_size, interpolation=interpolation, seed=seed)
        for note in notes:
            click.echo(f"note: {note}", err=True)
    elif from_model:
        if variant or any(v is not None for v in (patch_size, width, depth, heads, mlp_dim, num_classes)):
            raise UsageError("--from-model keeps the architecture; only --image-size may change")
        if image_size is None:
            raise UsageError("--from-model needs --image-size")
        old_spec = read_spec(from_model)
        new_config = old_spec.config.replace(image_size=image_size)  # validates divisibility early
        from ..modelfile import load_model, save_model
        from ..vit import rebuild_at_image_size

        model, spec = load_model(from_model)
        model, new_config = rebuild_at_image_size(model, spec.config, new_config.image_size,
                                                  method=interpolation or "bilinear")
        spec = ModelSpec(new_config, spec.labels, spec.preprocessing,
                         {**spec.info, "resized_from": list(spec.config.image_size)})
    else:
        if mlp_dim is None and width is not None and variant is None:
            mlp_dim = 4 * width
        config = variant_config(
            variant or DEFAULT_VARIANT, image_size=image_size, num_classes=num_classes, patch_size=patch_size,
            width=width, depth=depth, heads=heads, mlp_dim=mlp_dim, dropout=dropout,
            attention_dropout=attention_dropout, gelu=gelu,
        )
        spec = ModelSpec(config, validate_labels(labels, config.num_classes), Preprocessing(), {"seed": seed})
        from ..modelfile import save_model
        from ..vit import build_vit

        model = build_vit(config, seed=seed)

    started = time.perf_counter()
    save_model(model, spec, output, force=force)
    summary = {"output": output, "variant": spec.config.variant, "params": int(model.count_params()),
               "macs": spec.config.macs(), "input_shape": [None, *spec.config.image_size, spec.config.channels],
               "num_classes": spec.config.num_classes, "seconds": round(time.perf_counter() - started, 3)}
    if weights:
        summary.update(source_format=spec.info["source_format"], head=spec.info["head"])
    if summary["params"] != spec.config.param_count():
        raise VitedgeError("internal: Keras parameter count differs from the architecture's")  # pragma: no cover
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {output}: {spec.config.variant}, {summary['params']:,} parameters, "
                   f"{summary['macs'] / 1e9:.3f} GMACs per image")
