"""Models compiled from RASP programs with tracr, whose circuits are known by construction.

``programs`` names the programs (jax-free: vocabulary, length, input sampler); ``compile``
turns one into weights with tracr (needs the optional ``tracr`` extra); ``load`` reads the
committed weights into a ``TransformerBridge`` and the ground truth into graph edge ids
without jax.
"""
