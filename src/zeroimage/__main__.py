from zeroimage.cli import main

main()
