"""The training loop's parts both the paper reproduction and the studies use: data, models, the
loop.
"""
