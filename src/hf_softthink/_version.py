"""The package version (its own module, so code that needs it does not import the package and its lazy loaders)."""

__version__ = "0.1.0"
