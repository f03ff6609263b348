"""esm's version, apart so modules can read it without importing the package's face."""

__version__ = "0.1.0"
