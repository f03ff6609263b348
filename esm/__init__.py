"""esm: AWS Lambda event source mappings and asynchronous invocation, outside AWS."""

__version__ = "0.1.0"
