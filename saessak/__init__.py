"""saessak (새싹): a Korean-first LLM stack a small team can afford and audit end to end."""

__version__ = "0.1.0"
