"""`edgeplus`: thin commands over the public API."""

from __future__ import annotations

import json

import click


@click.group()
@click.version_option(package_name="tfmot_edgeplus")
def main():
    """tfmot_edgeplus: low-bit Keras models for microcontrollers."""


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the .tflite, report.json and report.png.")
@click.option("--quick", is_flag=True, help="Fewer samples and epochs (same code path).")
def demo(out_dir, quick):
    """Fashion-MNIST end to end: float -> W4A8 QAT -> INT4 .tflite -> TFLM."""
    from tfmot_edgeplus.demo import DemoConfig, run_demo

    run_demo(out_dir, DemoConfig.quick() if quick else DemoConfig())


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model, as_json):
    """How a .tflite stores its weights (type, bits per weight, bytes)."""
    from tfmot_edgeplus.conversion import conversion_report

    with open(model, "rb") as f:
        report = conversion_report(f.read())
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())


if __name__ == "__main__":
    main()
