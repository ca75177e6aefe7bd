"""Built-in strategy plugins, each registered through the ``mtlsearch`` entry-point group."""
