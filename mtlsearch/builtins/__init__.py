"""The core's own registrations, light to import: task kinds, datasets and weightings.

Each module here is the entry point of one built-in plugin (``builtin_tasks``,
``builtin_dense_tasks``, ``builtin_datasets``, ``builtin_weightings``). It names what it
registers by ``"module:attribute"`` with what the listings show beside it, so loading the
plugins (``mtlsearch --help``, ``mtlsearch datasets``) imports neither torch nor the modules
that define the entries; they are imported on first use. A base unit: these modules import
only the base modules (``hookspecs``), naming the layers' modules by string.
"""
