// placeholder: written by the widget front-end
