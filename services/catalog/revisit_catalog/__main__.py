from revisit_catalog.main import main

main()
