"""Secrets: `@secret:NAME` parameter values, kept in the desired folder's secrets.age (age-encrypted).

    model.py   pure: the plaintext format, names, references, fingerprints (no value ever leaves it
               except to the caller that asked for it)
    age.py     the `age` / `age-keygen` argv (the only place that runs them)
    folder.py  reading and writing a folder's secrets.age with age.py
"""
