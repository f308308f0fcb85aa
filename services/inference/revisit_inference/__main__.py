from revisit_inference.main import main

main()
