"""Built-in datasets: one module per loader (``load_<name>(*, seed=0, **options)``).

They are registered lazily by the ``builtin_datasets`` entry point,
:mod:`mtlsearch.builtins.datasets` (name, ``"module:function"`` and the loader's one line), so
``mtlsearch datasets`` lists them without importing them.
"""

from __future__ import annotations
