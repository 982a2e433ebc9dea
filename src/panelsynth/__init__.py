"""panelsynth: synthetic respondents for panel surveys with a cluster-guided, three-stage LLM method."""

__version__ = "0.1.0"
