"""The measuring engine: binning, the layer model, exact and sampled estimators, one layer's
measurement.
"""
