//! The Rust reading of `main()` blocks (`agenthub_catalog::main_guard`, what `info` reports)
//! against the truth, `bootstrap.py`'s `_main_guard`, on a table of `agent.py` snippets.

use std::io::Write;
use std::process::{Command, Stdio};

use agenthub_catalog::main_guard;

/// agent.py snippets, each read by the bootstrap's `_main_guard` and by `main_guard`.
const SNIPPETS: &[&str] = &[
    "def main():\n    pass\n\nif __name__ == \"__main__\":\n    main()\n",
    "if __name__ == '__main__':\n    main()\n",
    "if __name__ == '__main__':\r\n\tmain()\r\n",
    "if '__main__' == __name__:\n    main()\n",
    "if \"__main__\" == __name__:\n    sys.exit(main())\n",
    "if __name__ == '__main__':\n    main()  # run it\n",
    "if __name__ == '__main__':  # entry point\n    main()   \n",
    "if __name__ == '__main__':\n    # run\n    sys.exit(main())\n",
    "if __name__ == '__main__': asyncio.run(main())\n",
    "if __name__ == '__main__':\n    exit(main())\n",
    "if __name__ == '__main__':\n    quit(main())\n",
    "if __name__ == '__main__':\n    raise SystemExit(main())\n",
    "if __name__ == '__main__':\n    raise SystemExit(main()) from None\n",
    "if __name__ == '__main__':\n    main();\n",
    "if __name__ == '__main__':\n    main(); main()\n",
    "if __name__ == '__main__':\n    setup()\n    main()\n",
    "if __name__ == '__main__':\n    main(sys.argv)\n",
    "if __name__ == '__main__':\n    main()\nelse:\n    pass\n",
    "if __name__ == '__main__':\n    main()\n# done\nelif x:\n    pass\n",
    "if __name__ == '__main__':\n    main()\nif __name__ == '__main__':\n    main()\n",
    "import sys\nprint(sys.argv)\n",
    "def f():\n    if __name__ == '__main__':\n        main()\n",
    "'''\nif __name__ == '__main__':\n    main()\n'''\n",
    "if __name__ == '__main__':\n    (main)()\n",
    "if (__name__ == \"__main__\"):\n    sys.exit(\n        main()\n    )\n",
    "if __name__ == '__main__':\n    os.exit(main())\n",
    "if __name__ == '__main__':\n    main() + 1\n",
    "if __name__ == '__main__' and True:\n    main()\n",
    "if __name__ == b'__main__':\n    main()\n",
    "if __name__ == '__main__':\n    asyncio.run(main(), debug=True)\n",
    "if __name__ \\\n        == '__main__':\n    main()\n",
    "x = '# not a comment'\nif __name__ == '__main__':\n    main()  # comment with 'quote\n",
];

#[test]
fn main_guards_are_read_as_the_bootstrap_reads_them() {
    let script = "import json, sys\n\
                  ns = {'__name__': 'agenthub_bootstrap'}\n\
                  exec(sys.argv[1], ns)\n\
                  snippets = json.load(sys.stdin)\n\
                  print(json.dumps([ns['_main_guard'](s.encode()) for s in snippets]))\n";
    let mut child = Command::new("python3")
        .args(["-c", script, super::BOOTSTRAP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&serde_json::to_vec(SNIPPETS).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let python: Vec<Option<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(python.len(), SNIPPETS.len());
    let (mut accepted, mut rejected) = (0, 0);
    for (snippet, python) in SNIPPETS.iter().zip(python) {
        let rust = main_guard(snippet).map(|f| f.as_str().to_owned());
        assert_eq!(rust, python, "{snippet}");
        if python.is_some() { accepted += 1 } else { rejected += 1 }
    }
    assert!(accepted >= 10 && rejected >= 10, "{accepted} accepted, {rejected} rejected");
}
