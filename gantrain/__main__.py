"""``python -m gantrain`` runs the same CLI as the ``gantrain`` command."""

from gantrain.cli import main

if __name__ == "__main__":
    main()
