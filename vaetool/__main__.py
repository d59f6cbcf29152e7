from vaetool.cli import main

main()
