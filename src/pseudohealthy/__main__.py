from pseudohealthy.cli.main import main

main()
