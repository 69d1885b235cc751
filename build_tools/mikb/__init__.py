"""mikb: the mechanistic-interpretability knowledge base.

Data flows one way: YAML entries -> validated entry models -> knowledge graph -> pages.
"""

__version__ = "0.1.0"
