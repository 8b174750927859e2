"""The `tierwise` command's parts (app/cli.py is its entry point): the command groups and the session a
command works in (base), and the commands that fit and evaluate models (learning)."""
