"""The embedded store: model folders, states (files plus SQLite rows), job records, datasets.

Metadata lives in ``<root>/launcher.db`` (``db.Database``); bytes live in files under the data
root (``layout.DataRoot``). Import the store you need from its module.
"""
