"""`python -m charrnn` is the same as the `charrnn` command (and what torchrun launches)."""

from charrnn.cli import main

if __name__ == "__main__":
    main()
