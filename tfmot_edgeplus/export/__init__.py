"""Arduino output (see :mod:`tfmot_edgeplus.export.arduino`): the EdgePlus library package
(:func:`export_library`, ``make arduino``) and ready sketch folders for the Nano 33 BLE
(:func:`export_sketch`, ``edgeplus export arduino``); :mod:`~tfmot_edgeplus.export.c_arrays`
writes the aligned C arrays and provenance banners they hold."""

from tfmot_edgeplus.export.arduino import (
    ExportError,
    SketchExport,
    export_library,
    export_sketch,
    write_sketch_data,
)

__all__ = ["ExportError", "SketchExport", "export_library", "export_sketch", "write_sketch_data"]
