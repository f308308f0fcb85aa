from revisit_store.main import main

main()
