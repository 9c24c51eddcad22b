from saessak.cli import main

raise SystemExit(main())
