"""dumont-plan: infrastructure-as-code for the Dumont Cloud GPU platform."""

__version__ = "0.1.0"
