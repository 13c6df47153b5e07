"""The one base class of the project's errors, so a CLI catches ours and nothing else."""


class WhoiscrawlError(Exception):
    """An error the project raises on purpose, with a message meant for the operator."""
