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
@click.option("--method", type=click.Choice(["quarc", "cora"]), default="quarc",
              show_default=True,
              help="Quantization stage: QuaRC little-data QAT, or PTQ + CoRa adapters.")
@click.option("--calibration/--no-calibration", default=True, show_default=True,
              help="Add the on-device calibration part (QCore on the IMU watch data).")
def demo(out_dir, quick, method, calibration):
    """Fashion-MNIST end to end: float -> W4A8 (QuaRC QAT or CoRa) -> INT4 .tflite -> TFLM,
    then a deployed IMU model recalibrating itself on new subjects (QCore)."""
    from dataclasses import replace

    from tfmot_edgeplus.demo import DemoConfig, run_demo

    config = DemoConfig.quick() if quick else DemoConfig()
    run_demo(out_dir, replace(config, method=method, calibration=calibration))


@main.command()
@click.option("--data", "task", type=click.Choice(["fashion_mnist", "imu_watch"]),
              default="fashion_mnist", show_default=True, help="Bundled training/test data.")
@click.option("--model", "model_path", type=click.Path(exists=True), default=None,
              help="Trained float Keras 2 model (.h5 or SavedModel folder); default: train "
                   "the reference model for --data first.")
@click.option("--bits", "weight_bits", type=click.Choice(["2", "3", "4", "8"]), default="4",
              show_default=True, help="Weight bits (activations 8).")
@click.option("--coreset", type=click.Choice(["res", "random", "full"]), default="res",
              show_default=True, help="Training data: RES coreset, random coreset, or all.")
@click.option("--fraction", type=float, default=0.1, show_default=True,
              help="Share of the training data in the coreset, in (0, 1].")
@click.option("--clc/--no-clc", default=True, show_default=True,
              help="Add cascaded layer correction to the KD loss.")
@click.option("--beta", type=float, default=1.0, show_default=True, help="Weight of L_CLC.")
@click.option("--epochs", type=int, default=10, show_default=True, help="QAT epochs.")
@click.option("--reselect-every", type=int, default=None,
              help="Re-score and re-select the coreset every R epochs (default: once).")
@click.option("--train-samples", type=int, default=None,
              help="Use only this many training samples (a class-stratified subset).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the .tflite, report.json and report.png.")
def qat(task, model_path, weight_bits, coreset, fraction, clc, beta, epochs, reselect_every,
        train_samples, seed, out_dir):
    """Little-data QAT (QuaRC): coreset + KD (+ CLC), then a low-bit .tflite run in TFLM.

    Example: edgeplus qat --bits 2 --coreset res --fraction 0.01 --clc --out out/
    """
    from tfmot_edgeplus.demo import DemoConfig, run_demo

    if coreset == "full" and fraction != 1.0:
        click.echo(f"--coreset full trains on every sample; ignoring --fraction {fraction}.")
    config = DemoConfig(
        task=task, model_path=model_path, train_samples=train_samples,
        weight_bits=int(weight_bits), coreset=coreset,
        fraction=1.0 if coreset == "full" else fraction, beta=beta if clc else 0.0,
        qat_epochs=epochs, reselect_every=reselect_every, seed=seed)
    try:
        config.stage()
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    run_demo(out_dir, config)


@main.command()
@click.option("--data", "task", type=click.Choice(["fashion_mnist", "imu_watch"]),
              default="fashion_mnist", show_default=True, help="Bundled training/test data.")
@click.option("--model", "model_path", type=click.Path(exists=True), default=None,
              help="Trained float Keras 2 model (.h5 or SavedModel folder); default: train "
                   "the reference model for --data first.")
@click.option("--bits", "weight_bits", type=click.Choice(["2", "3", "4", "8"]), default="4",
              show_default=True, help="Weight bits of the main layers (activations 8).")
@click.option("--budget", type=float, default=0.05, show_default=True,
              help="Adapter parameters as a fraction of the adapted kernels', in (0, 1].")
@click.option("--rank-search", type=click.Choice(["greedy", "butterworth"]), default="greedy",
              show_default=True,
              help="Ranks from the residuals' singular values, or the learned Butterworth cutoffs.")
@click.option("--steps", type=int, default=250, show_default=True,
              help="KD calibration steps of the adapters.")
@click.option("--calib-samples", type=int, default=1600, show_default=True,
              help="Training samples the whole stage uses.")
@click.option("--train-samples", type=int, default=None,
              help="Use only this many training samples (a class-stratified subset).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the .tflite, report.json and report.png.")
def cora(task, model_path, weight_bits, budget, rank_search, steps, calib_samples,
         train_samples, seed, out_dir):
    """Low-bit PTQ + CoRa residual adapters (int8, builtin ops), then a .tflite run in TFLM.

    Example: edgeplus cora --bits 4 --budget 0.05 --steps 250 --out out/
    """
    from tfmot_edgeplus.demo import DemoConfig, run_demo

    config = DemoConfig(
        task=task, method="cora", model_path=model_path, train_samples=train_samples,
        weight_bits=int(weight_bits), budget=budget, rank_search=rank_search,
        cora_steps=steps, calib_samples=calib_samples, seed=seed)
    try:
        config.stage()
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    run_demo(out_dir, config)


def _ints(value: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {value!r}") from None


@main.command()
@click.option("--bits", "weight_bits", type=click.Choice(["4", "8"]), default="4",
              show_default=True, help="Weight bits of the deployed model (activations 8).")
@click.option("--train-subjects", default="1,2,3,4", show_default=True,
              help="IMU subjects the model trains on.")
@click.option("--offline-subjects", default="5,6", show_default=True,
              help="Shifted subjects the flip networks learn from (offline, on the host).")
@click.option("--stream-subjects", default="7,8,9,10", show_default=True,
              help="New subjects that arrive on the device, in this order.")
@click.option("--chunk-size", type=int, default=40, show_default=True,
              help="Labeled windows per chunk.")
@click.option("--chunks-per-subject", type=int, default=2, show_default=True)
@click.option("--core-size", type=int, default=20, show_default=True,
              help="QCore samples kept on the device.")
@click.option("--fp-epochs", type=int, default=30, show_default=True,
              help="Float training epochs (with quantization-miss tracking).")
@click.option("--methods", default="none,qcore_bitflip,bp_finetune,replay", show_default=True,
              help="Comma-separated methods to compare (tfmot_edgeplus.calibration.METHODS).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the deployed and calibrated .tflite, qcore.json and qcore.png.")
def qcore(weight_bits, train_subjects, offline_subjects, stream_subjects, chunk_size,
          chunks_per_subject, core_size, fp_epochs, methods, seed, out_dir):
    """On-device continual calibration (QCore) of a deployed IMU model as new subjects arrive.

    Trains the IMU model on --train-subjects while counting quantization misses, deploys it
    (full-integer .tflite), trains the bit-flip network offline, then calibrates the deployed
    head on each chunk of the new subjects, with and without QCore and against the
    back-propagation baselines.

    Example: edgeplus qcore --bits 4 --stream-subjects 7,8 --out out/qcore
    """
    from tfmot_edgeplus.qcore import QCoreConfig, qcore_continual, summary_table, write_run

    try:
        config = QCoreConfig(
            weight_bits=int(weight_bits),
            train_subjects=_ints(train_subjects, "--train-subjects"),
            offline_subjects=_ints(offline_subjects, "--offline-subjects"),
            stream_subjects=_ints(stream_subjects, "--stream-subjects"),
            chunk_size=chunk_size, chunks_per_subject=chunks_per_subject, core_size=core_size,
            fp_epochs=fp_epochs, methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
            seed=seed)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    run = qcore_continual(config)
    click.echo(summary_table(run))
    if out_dir:
        click.echo(f"wrote {', '.join(write_run(run, out_dir))} in {out_dir}")


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
