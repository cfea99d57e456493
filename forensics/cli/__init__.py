"""The command line: thin commands over library functions a Python user can call too."""
