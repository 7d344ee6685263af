from honeyjet.cli import main

raise SystemExit(main())
