from rgrid.cli.app import main

main()
