"""Networks as users write them: tracing a model, propagating ranges, finding and measuring its
layers.
"""
