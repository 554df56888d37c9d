"""The package's version, in one place: setup.cfg reads it (``version = attr: ...``), the
package re-exports it as ``tfmot_edgeplus.__version__``, and modules of any layer (the
Arduino export's banner) import it from here without importing the top of the package."""

__version__ = "0.1.0"
