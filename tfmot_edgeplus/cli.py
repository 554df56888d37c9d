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
@click.option("--patching/--no-patching", default=True, show_default=True,
              help="Add the patch-based inference part (QuantMCU, MobileNetV2 at 96x96).")
def demo(out_dir, quick, method, calibration, patching):
    """Fashion-MNIST end to end: float -> W4A8 (QuaRC QAT or CoRa) -> INT4 .tflite -> TFLM,
    then a deployed IMU model recalibrating itself on new subjects (QCore), then a
    MobileNetV2 planned patch by patch within 256 KB (QuantMCU)."""
    from dataclasses import replace

    from tfmot_edgeplus.demo import DemoConfig, run_demo

    config = DemoConfig.quick() if quick else DemoConfig()
    run_demo(out_dir, replace(config, method=method, calibration=calibration,
                              patching=patching))


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
@click.option("--stream", type=click.Choice(["imu_watch", "fashion_shift"]), default="imu_watch",
              show_default=True,
              help="imu_watch: new people; fashion_shift: Fashion-MNIST turned, dimmed, moved.")
@click.option("--train-subjects", default="1,2,3,4", show_default=True,
              help="IMU subjects the model trains on.")
@click.option("--offline-subjects", default="5,6", show_default=True,
              help="Shifted subjects the flip networks learn from (offline, on the host).")
@click.option("--stream-subjects", default="7,8,9,10", show_default=True,
              help="New subjects that arrive on the device, in this order.")
@click.option("--chunk-size", type=int, default=40, show_default=True,
              help="Labeled samples per chunk.")
@click.option("--chunks-per-domain", type=int, default=2, show_default=True,
              help="Chunks per new subject (or image shift).")
@click.option("--core-size", type=int, default=40, show_default=True,
              help="QCore samples (from the training data) kept on the device.")
@click.option("--memory-size", type=int, default=20, show_default=True,
              help="New samples the device keeps between chunks.")
@click.option("--old-tolerance", type=float, default=0.0, show_default=True,
              help="Share of the QCore a step may get wrong that the deployed model got right.")
@click.option("--fp-epochs", type=int, default=None,
              help="Float training epochs (default 30 on imu_watch, 10 on fashion_shift).")
@click.option("--methods", default="none,qcore_bitflip,bp_finetune,replay", show_default=True,
              help="Comma-separated methods to compare (tfmot_edgeplus.calibration.METHODS).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the deployed and calibrated .tflite, qcore.json and qcore.png.")
def qcore(weight_bits, stream, train_subjects, offline_subjects, stream_subjects, chunk_size,
          chunks_per_domain, core_size, memory_size, old_tolerance, fp_epochs, methods, seed,
          out_dir):
    """On-device continual calibration (QCore) of a deployed model as its data shifts.

    Trains the model (IMU: on --train-subjects) while counting quantization misses, deploys
    it (full-integer .tflite), trains the bit-flip network offline, then calibrates the
    deployed head on each chunk of the new subjects (or shifted images), with and without
    QCore and against the back-propagation baselines. The table's "old" column is the
    accuracy on held-out data of the training domain after the stream.

    Example: edgeplus qcore --bits 4 --stream-subjects 7,8 --out out/qcore
    """
    from tfmot_edgeplus.recipes.qcore import QCoreConfig, qcore_continual, summary_table, write_run

    try:
        config = QCoreConfig(
            weight_bits=int(weight_bits),
            stream=stream,
            train_subjects=_ints(train_subjects, "--train-subjects"),
            offline_subjects=_ints(offline_subjects, "--offline-subjects"),
            stream_subjects=_ints(stream_subjects, "--stream-subjects"),
            chunk_size=chunk_size, chunks_per_domain=chunks_per_domain, core_size=core_size,
            memory_size=memory_size, old_tolerance=old_tolerance, fp_epochs=fp_epochs,
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()), seed=seed)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    run = qcore_continual(config)
    click.echo(summary_table(run))
    if out_dir:
        click.echo(f"wrote {', '.join(write_run(run, out_dir))} in {out_dir}")


def _bytes_size(value: str) -> int:
    """'256k' / '256K' / '0.25M' / '262144' -> bytes (k = 1024)."""
    text = value.strip().lower().removesuffix("b")
    scale = {"k": 1024, "m": 1024 * 1024}.get(text[-1:], 1)
    try:
        number = float(text[:-1] if scale > 1 else text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size; use e.g. 256k, 0.5M or 262144") from None
    if number <= 0:
        raise click.BadParameter(f"{value!r} must be positive")
    return int(number * scale)


def _calib_data(spec: str, input_shape, samples: int):
    import numpy as np

    if spec == "fashion_mnist":
        from tfmot_edgeplus import datasets
        from tfmot_edgeplus.recipes.quantmcu import upsample

        h, w, c = input_shape
        if h != w or c != 1:
            raise click.BadParameter(
                f"--calib fashion_mnist makes (N, S, S, 1) images; the model takes {input_shape}"
            )
        data = datasets.fashion_mnist(limit_train=samples, limit_test=1, seed=1)
        return upsample(data.x_train, h)
    try:
        arr = np.load(spec)
    except (OSError, ValueError) as err:
        raise click.BadParameter(f"--calib {spec!r}: cannot read it as .npy ({err})") from None
    return arr[:samples]


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--calib", default=None,
              help="Calibration inputs: a .npy of float samples (N, H, W, C), or fashion_mnist "
                   "(training images upsampled to the input, scaled to [-1, 1], as the QuantMCU "
                   "recipe trains). Without it: an 8-bit plan (no VDPC/VDQS).")
@click.option("--calib-samples", type=int, default=256, show_default=True)
@click.option("--sram", default="256k", show_default=True,
              help="SRAM budget for activations: 256k, 0.5M, 262144...")
@click.option("--phi", type=float, default=0.999, show_default=True,
              help="VDPC: quantile of |v| above which a value is an outlier.")
@click.option("--lam", type=float, default=0.5, show_default=True,
              help="VDQS: weight of the entropy change against the BitOPs saving.")
@click.option("--outlier-sample-fraction", type=float, default=0.1, show_default=True,
              help="VDPC: a patch exceeding phi in more than this fraction of the calibration "
              "samples is an outlier patch (8-bit); a share of samples, not of patches.")
@click.option("--low-bits", default="4,2", show_default=True,
              help="VDQS: the activation bits below 8 it may choose (4,2 or 4 or 2).")
@click.option("--grid", type=int, default=None, help="Force an n x n grid.")
@click.option("--split", default=None, help="Force the split tensor (a name from the table).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write plan.json, plan.png and the deployed model_patched.tflite here.")
def plan(model, calib, calib_samples, sram, phi, lam, outlier_sample_fraction, low_bits, grid,
         split, out_dir):
    """Plan patch-based, mixed-precision inference (QuantMCU) of a full-integer .tflite.

    Prints the plan (per-layer memory, bits, BitOPs), plots it, and with --out writes the
    plan and the deployed model, whose patch stage is one EDGEPLUS_PATCH_STAGE operator.

    Example: edgeplus plan model.tflite --calib fashion_mnist --sram 256k --out out/plan
    """
    import os

    from tfmot_edgeplus import patching
    from tfmot_edgeplus.patching import lower
    from tfmot_edgeplus.patching.deploy import deploy_model

    with open(model, "rb") as f:
        tfl = f.read()
    try:
        graph = patching.read_tflite_graph(tfl)
        x = None if calib is None else _calib_data(calib, graph.input_shape, calib_samples)
        p = patching.plan(tfl, x, sram_budget=_bytes_size(sram), phi=phi, lam=lam,
                          outlier_sample_fraction=outlier_sample_fraction, grid=grid,
                          split=split, low_bits=_ints(low_bits, "--low-bits"))
        lowered = lower.lower(tfl, p)
    except (ValueError, TypeError) as err:  # PlanError, GraphError, PlanMismatchError...
        raise click.ClickException(str(err)) from None
    click.echo(p.summary())
    out_dir = out_dir or os.path.dirname(os.path.abspath(model))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(model))[0]
    paths = [os.path.join(out_dir, f"{stem}_plan.json"), os.path.join(out_dir, f"{stem}_plan.png"),
             os.path.join(out_dir, f"{stem}_patched.tflite")]  # fmt: skip
    with open(paths[0], "w") as f:
        f.write(p.to_json())
    p.plot(paths[1])
    with open(paths[2], "wb") as f:
        f.write(deploy_model(tfl, lowered))
    click.echo(f"wrote {', '.join(paths)}")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(model, as_json):
    """How a .tflite stores its weights (type, bits per weight, bytes)."""
    from tfmot_edgeplus.conversion import conversion_report

    with open(model, "rb") as f:
        report = conversion_report(f.read())
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())


@main.group()
def export():
    """Arduino output: the EdgePlus library, and sketch folders for the Nano 33 BLE."""


@export.command("arduino")
@click.option("--model", "model", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The full-integer .tflite the plan and the QCore were made for.")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A plan.json from `edgeplus plan`: the stage runs as one patch-stage op.")
@click.option("--qcore", "qcore_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A qcore.npz from `edgeplus qcore` / save_qcore: on-device calibration.")
@click.option("--chunk", type=int, default=20, show_default=True,
              help="Labeled samples the device keeps between two calibrations.")
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="A .npy holding one test input (float or int8) for the sketch.")
@click.option("--label", type=int, default=-1, show_default=True,
              help="The test input's label (-1: unknown).")
@click.option("--flash-reserve", default="16k", show_default=True,
              help="Flash your own code adds to the sketch (mbed-os's share and TFLM's code "
              "are counted already).")
@click.option("--sram-reserve", default="4k", show_default=True,
              help="SRAM your own code adds to the sketch (mbed-os's stacks are counted "
              "already).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="The sketch folder to write (its name becomes the sketch's).")
@click.option("--force", is_flag=True, help="Replace the folder if an earlier export wrote it.")
def export_arduino(model, plan_path, qcore_path, chunk, input_path, label, flash_reserve,
                   sram_reserve, out_dir, force):
    """Write a ready sketch folder for the Arduino Nano 33 BLE and print the arduino-cli
    commands that build and upload it.

    Example: edgeplus export arduino --model m.tflite --plan m_plan.json --out out/MySketch
    """
    import numpy as np

    from tfmot_edgeplus.export.arduino import ExportError, export_sketch

    x = None if input_path is None else np.load(input_path, allow_pickle=False)
    try:
        sk = export_sketch(model, out_dir, plan=plan_path, qcore=qcore_path, chunk=chunk,
                           test_input=x, test_label=label, force=force,
                           flash_reserve=_bytes_size(flash_reserve),
                           sram_reserve=_bytes_size(sram_reserve))  # fmt: skip
    except (ExportError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(sk.summary())
    click.echo("Build and upload:\n" + "\n".join(f"  {c}" for c in sk.commands.splitlines()))


@export.command("arduino-library")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="The library folder to write, e.g. ~/Arduino/libraries/EdgePlus.")
@click.option("--force", is_flag=True, help="Replace the folder if an earlier export wrote it.")
def export_arduino_library(out_dir, force):
    """Package the EdgePlus Arduino library: the repository's arduino/EdgePlus plus the C
    kernels and TFLM glue of tflm_ops, copied byte for byte."""
    from tfmot_edgeplus.export.arduino import ExportError, export_library

    try:
        out = export_library(out_dir, force=force)
    except ExportError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote the EdgePlus library to {out}")


if __name__ == "__main__":
    main()
