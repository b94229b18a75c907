"""``make bench``: speed figures of the launcher, each beside a reference measured in the same run.

``python -m bench`` runs every measurement (``--quick`` for a reduced smoke run, ``--only`` for
a subset), prints a table (figure, reference, ratio, target, pass/miss) and writes the figures
as JSON so runs can be compared. One module per measurement; ``report`` owns the figure type,
the table and the JSON, ``common`` the shared machinery (statistics, launcher, RSS sampling).
"""
