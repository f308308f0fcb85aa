from revisit_preprocess.main import main

main()
