"""traitlens: the Python side of the workflow (pure, tested modules).

Entry scripts in ``workflow_scripts/`` are what Snakemake's ``script:`` runs; they read
``snakemake.input``/``params``/``output`` and call the functions here.
"""
