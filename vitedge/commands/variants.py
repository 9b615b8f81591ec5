"""`vitedge variants`: the named ViT configurations."""

import json

import click

from ..table import format_table, human_count
from ..variants import VARIANTS, variant_config


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def variants(as_json):
    """List the named ViT variants with their sizes and cost.

    \b
    Example:
      vitedge variants
      vitedge variants --json | jq '.[] | .name'
    """
    rows = []
    for name, (_, description) in VARIANTS.items():
        c = variant_config(name)
        rows.append({
            "name": name, "image_size": list(c.image_size), "patch_size": c.patch_size, "width": c.width,
            "depth": c.depth, "heads": c.heads, "head_dim": c.head_dim, "mlp_dim": c.mlp_dim,
            "num_classes": c.num_classes, "params": c.param_count(), "macs": c.macs(), "description": description,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ["variant", "input", "patch", "width", "depth", "heads", "mlp", "classes", "params", "MACs", "description"]
    table = [[r["name"], "x".join(map(str, r["image_size"])), r["patch_size"], r["width"], r["depth"], r["heads"],
              r["mlp_dim"], r["num_classes"], human_count(r["params"]), human_count(r["macs"]), r["description"]]
             for r in rows]
    click.echo(format_table(headers, table, right=range(1, 10)))
