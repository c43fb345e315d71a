"""The error a user sees when a step cannot do its work."""


class StepError(Exception):
    """A step could not do its work; the message is one line naming stage, host and step."""
