from edgemeter.cli import main

main()
