from rgrid.cli.thin import main

main()
