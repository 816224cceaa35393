"""One module per paper; each defines ``main(args)``."""
