"""The UI package: anywidget models over the front-end in js/ (the training dashboard and the
study dashboard).
"""
