"""The ``mlcommons`` command's client verbs: ``models``, ``predict`` and ``tasks`` talk HTTP to a
running server, as curl or opensearch-py-ml would, on the standard library alone.

- ``http.py``: the connection (URL, credentials, TLS), the exit codes, and the errors that map to them;
- ``output.py``: rich output on a terminal, plain lines (or ``--json``) otherwise;
- ``upload.py``: packaging a model folder, describing an archive, and the chunked upload;
- ``verbs.py``: what each verb does;
- ``parser.py``: the verbs' argparse sub-parsers, which ``mlcommons/cli.py`` adds to its own.

Nothing here imports the server's packages at import time, so the verbs start fast; torch is
imported only when a model folder must be traced or an archive probed.
"""
