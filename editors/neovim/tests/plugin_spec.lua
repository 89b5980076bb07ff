-- The plugin against an in-process fake server (tests/fake_server.lua): exact ranges, position
-- encodings, timing of answers. The real server is driven by the other specs.

local helpers = require("helpers")
local eq, ok = helpers.eq, helpers.ok

local child ---@type Child

--- Starts a child with the fake server answering `items` (a list of InlineCompletionItem) and opens a
--- Python file holding `lines`.
local function start(opts)
  opts = opts or {}
  child = helpers.child()
  child:lua(
    [[
    local fake, encoding, setup = require("fake_server"), ...
    fake.encoding = encoding
    setup.cmd = fake.cmd
    require("codestral").setup(setup)
  ]],
    opts.encoding or "utf-16",
    vim.tbl_extend("force", { auto_trigger = false }, opts.setup or {})
  )
  child:edit("a.py", opts.lines or { "" })
  child:wait("(require('codestral').status() or {}).state == 'ready'")
end

--- Makes the fake server answer every request with `items`, after `delay` ms.
local function answer(items, delay)
  child:lua(
    "local items, delay = ...; require('fake_server').respond = function() return { items = items }, delay end",
    items,
    delay
  )
end

--- Makes the fake server build its answer from the request: `code` is a Lua function body over `p`.
local function answer_with(code)
  child:lua("require('fake_server').respond = function(p) " .. code .. " end")
end

local function visible()
  return child:lua("return require('codestral').is_visible()")
end

local function current()
  local shown = child:lua("return require('codestral.suggestion').current()")
  return shown ~= vim.NIL and shown or nil
end

local function line()
  return child:lua("return vim.api.nvim_get_current_line()")
end

after_each(function()
  helpers.stop_all()
end)

describe("setup", function()
  it("rejects invalid options with a message naming them", function()
    child = helpers.child()
    local function err(opts)
      return child:lua("local ok, e = pcall(require('codestral').setup, ...); return not ok and e or nil", opts)
    end
    ok(
      tostring(err({ debounce_ms = -1 })):find("debounce_ms: expected integer >= 0, got %-1"),
      err({ debounce_ms = -1 })
    )
    ok(tostring(err({ keymaps = { accept = 1 } })):find("keymaps.accept"), err({ keymaps = { accept = 1 } }))
    ok(tostring(err({ keymap = {} })):find('unknown option "keymap"'), err({ keymap = {} }))
    ok(tostring(err({ cmd = {} })):find("cmd: expected non%-empty list"), err({ cmd = {} }))
    eq(0, child:lua("return #vim.lsp.get_clients()"), "no server started after an invalid setup")
  end)

  it("attaches to a buffer opened before setup()", function()
    child = helpers.child()
    child:edit("early.py", { "" })
    child:lua("require('codestral').setup({ cmd = require('fake_server').cmd })")
    child:wait("#vim.lsp.get_clients({ bufnr = 0, name = 'codestral' }) == 1")
  end)

  it("sends settings at start and again when called twice, to one server", function()
    start({ setup = { settings = { completion = { maxTokens = 7 } } } })
    eq(
      { completion = { maxTokens = 7 } },
      child:lua("return require('fake_server').messages('initialize')[1].initializationOptions"),
      "initializationOptions"
    )
    child:lua(
      "require('codestral').setup({ cmd = require('fake_server').cmd, settings = { completion = { maxTokens = 3 } } })"
    )
    child:edit("b.py", { "" })
    child:wait("#vim.lsp.get_clients({ bufnr = 0, name = 'codestral' }) == 1")
    local changes = child:lua("return require('fake_server').messages('workspace/didChangeConfiguration')")
    eq({ codestral = { completion = { maxTokens = 3 } } }, changes[#changes].settings, "last didChangeConfiguration")
    eq(1, child:lua("return #vim.lsp.get_clients({ name = 'codestral' })"), "servers running")
  end)
end)

describe("ghost text", function()
  it("shows the first line inline and the others as virtual lines", function()
    start({ lines = { "def f():" } })
    answer({ { insertText = "\n    x = 1\n\treturn x" } })
    child:lua("vim.bo.tabstop = 4")
    child:input("A<M-]>")
    child:wait("require('codestral').is_visible()")
    local marks = child:extmarks()
    eq(1, #marks, "one extmark")
    local row, col, details = marks[1][2], marks[1][3], marks[1][4]
    eq({ 0, 8 }, { row, col }, "extmark at the cursor")
    eq(nil, details.virt_text, "no inline text for a suggestion that starts with a line break")
    eq(
      { { { "    x = 1", "CodestralSuggestion" } }, { { "    return x", "CodestralSuggestion" } } },
      details.virt_lines,
      "virtual lines, tabs expanded"
    )
    eq(
      { link = "Comment", default = true },
      child:lua("return vim.api.nvim_get_hl(0, { name = 'CodestralSuggestion' })"),
      "highlight"
    )
  end)

  it("asks again when the server becomes ready, for what was typed during the load", function()
    child = helpers.child()
    child:lua([[
      local fake = require("fake_server")
      fake.status = { state = "loading", message = "loading the model", model = "fake" }
      fake.respond = function() return { items = {} } end -- a loading server answers empty
      require("codestral").setup({ cmd = fake.cmd, auto_trigger = true, debounce_ms = 10 })
    ]])
    child:edit("a.py", { "x = " })
    child:wait("(require('codestral').status() or {}).state == 'loading'")
    child:input("A")
    child:wait("#require('fake_server').messages('textDocument/inlineCompletion') > 0") -- answered empty
    vim.wait(100)
    child:settle()
    local before = child:lua("return #require('fake_server').messages('textDocument/inlineCompletion')")
    child:lua([[
      local fake = require("fake_server")
      fake.respond = function() return { items = { { insertText = "42" } } } end
      fake.send_status({ state = "ready", message = "loaded", model = "fake" })
    ]])
    child:wait("#require('fake_server').messages('textDocument/inlineCompletion') > " .. before)
    child:wait("require('codestral').is_visible()")
    eq("42", current().text, "the suggestion asked for at ready")
  end)

  it("asks again on the cascade's refresh for the buffer's version, and only then", function()
    start({ lines = { "x = " } })
    answer({ { insertText = "local" } })
    child:input("A")
    child:lua("require('codestral').request()")
    child:wait("require('codestral').is_visible()")
    local before = child:lua("return #require('fake_server').messages('textDocument/inlineCompletion')")
    child:lua([[
      local fake = require("fake_server")
      fake.respond = function() return { items = { { insertText = "remote" } } } end
      local uri, version = vim.uri_from_bufnr(0), vim.lsp.util.buf_versions[0] or vim.lsp.util.buf_versions[vim.api.nvim_get_current_buf()]
      fake.send("codestral/inlineCompletionRefresh", { uri = uri, version = version + 1 }) -- not this version
      vim.wait(100)
      fake.send("codestral/inlineCompletionRefresh", { uri = uri, version = version })
    ]])
    child:wait("#require('fake_server').messages('textDocument/inlineCompletion') == " .. (before + 1))
    child:wait("(require('codestral.suggestion').current() or {}).text == 'remote'")
    vim.wait(100)
    eq(before + 1, child:lua("return #require('fake_server').messages('textDocument/inlineCompletion')"), "one request")
  end)

  it("does not show an answer that is no longer the latest", function()
    start({ lines = { "x = " } })
    answer({ { insertText = "old" } }, 300)
    child:input("A<M-]>")
    child:settle()
    answer({ { insertText = "new" } }, 0)
    child:input("<M-]>")
    child:wait("require('codestral').is_visible()")
    vim.wait(400)
    eq("new", current().text, "the later answer stays")
  end)

  it("does not show an answer that arrives after the text changed", function()
    start({ lines = { "x = " } })
    answer({ { insertText = "stale" } }, 200)
    child:input("A<M-]>")
    child:settle()
    child:input("1")
    vim.wait(400)
    eq(false, visible(), "visible")
    eq({}, child:extmarks(), "extmarks")
  end)

  it("is dismissed on cursor move, on a change, on leaving insert mode and by dismiss()", function()
    start({ lines = { "x = " } })
    answer({ { insertText = "value" } })
    for _, keys in ipairs({ "<Left>", "y", "<Esc>", "<C-]>" }) do
      child:input("A<M-]>")
      child:wait("require('codestral').is_visible()")
      child:input(keys)
      child:wait("not require('codestral').is_visible()")
      eq({}, child:extmarks(), "extmarks after " .. keys)
      child:input("<Esc>")
      child:settle()
    end
  end)

  it("keeps the rest shown while the user types the suggestion's own characters", function()
    start({ lines = { "x = ()" } })
    answer_with([[
      local stop = { line = p.position.line, character = p.position.character + 1 }
      return { { insertText = "value)", range = { start = p.position, ["end"] = stop } }, { insertText = "vx" } }
    ]])
    child:lua("vim.api.nvim_win_set_cursor(0, { 1, 5 })")
    child:input("i<M-]>")
    child:wait("require('codestral').is_visible()")
    child:input("va")
    child:wait("(require('codestral.suggestion').current() or {}).text == 'lue)'")
    eq({ text = "lue)", replaced = ")", index = 1, count = 1 }, current(), "the rest, the other item dropped")
    eq({ 0, 7 }, { child:extmarks()[1][2], child:extmarks()[1][3] }, "ghost text at the cursor")
    eq(1, #child:lua("return require('fake_server').messages('textDocument/inlineCompletion')"), "requests")
    child:input("<Tab>")
    child:wait("not require('codestral').is_visible()")
    eq("x = (value)", line(), "line")
  end)

  it("cycles through distinct items with next and prev", function()
    start({ lines = { "x = " } })
    answer({ { insertText = "one" }, { insertText = "two" }, { insertText = "one" }, { insertText = "three" } })
    child:input("A<M-]>")
    child:wait("require('codestral').is_visible()")
    eq({ text = "one", replaced = "", index = 1, count = 3 }, current(), "first")
    child:input("<M-]>")
    child:wait("require('codestral.suggestion').current().index == 2")
    eq("two", child:extmarks()[1][4].virt_text[1][1], "ghost text follows")
    child:input("<M-[><M-[>")
    child:wait("require('codestral.suggestion').current().index == 3")
    eq("three", current().text, "wrapped around")
  end)
end)

describe("accept", function()
  -- `x = "é𝄞" + f()` with the cursor before ")": 14 UTF-16 units, 17 bytes.
  for _, encoding in ipairs({ "utf-16", "utf-8" }) do
    it("replaces the item's range, auto-closed bracket included, in " .. encoding, function()
      start({ encoding = encoding, lines = { 'x = "é𝄞" + f()' } })
      answer_with([[
        local c = p.position.character
        return { items = { { insertText = "a, b)", range = { start = p.position,
          ["end"] = { line = p.position.line, character = c + 1 } } } } }
      ]])
      child:lua("vim.api.nvim_win_set_cursor(0, { 1, 17 })")
      child:input("i<M-]>")
      child:wait("require('codestral').is_visible()")
      local sent = child:lua("return require('fake_server').messages('textDocument/inlineCompletion')[1].position")
      eq({ line = 0, character = encoding == "utf-16" and 14 or 17 }, sent, "position sent")
      eq({ { "a, b", "CodestralSuggestion" } }, child:extmarks()[1][4].virt_text, "the replaced ) is not shown twice")
      child:input("<Tab>")
      child:wait("not require('codestral').is_visible()")
      eq('x = "é𝄞" + f(a, b)', line(), "line")
      eq(
        { 1, #'x = "é𝄞" + f(a, b)' },
        child:lua("return vim.api.nvim_win_get_cursor(0)"),
        "cursor after the insertion"
      )
    end)
  end

  it("takes a range that starts before the cursor when it covers what the item begins with", function()
    start({ lines = { "print(é" } })
    answer_with([[
      return { { insertText = "éa)", range = { start = { line = 0, character = 6 }, ["end"] = p.position } } }
    ]])
    child:input("A<M-]>")
    child:wait("require('codestral').is_visible()")
    eq("a)", current().text, "shown text starts at the cursor")
    child:input("<Tab>")
    child:wait("not require('codestral').is_visible()")
    eq("print(éa)", line(), "line")
  end)

  it("accepts word by word and line by line", function()
    start({ lines = { "y = " } })
    answer({ { insertText = "foo(bar_1, é)\nqux" } })
    child:input("A<M-]>")
    child:wait("require('codestral').is_visible()")
    local steps = {
      { "<M-w>", "y = foo", "(bar_1, é)\nqux" },
      { "<M-w>", "y = foo(", "bar_1, é)\nqux" },
      { "<M-w>", "y = foo(bar_1", ", é)\nqux" },
      { "<M-w>", "y = foo(bar_1,", " é)\nqux" },
      { "<M-w>", "y = foo(bar_1, é", ")\nqux" },
      { "<M-l>", "y = foo(bar_1, é)", "\nqux" },
    }
    for _, step in ipairs(steps) do
      child:input(step[1])
      child:wait("(require('codestral.suggestion').current() or {}).text == ...", nil, step[3])
      local before = child:around_cursor()
      eq(step[2], before, "text before the cursor after " .. step[1])
      eq(#step[2], child:extmarks()[1][3], "ghost text follows the cursor")
    end
    child:input("<M-l>")
    child:wait("not require('codestral').is_visible()")
    eq({ "y = foo(bar_1, é)", "qux" }, child:lua("return vim.api.nvim_buf_get_lines(0, 0, -1, true)"), "buffer")
  end)

  it("runs the item's command after accepting", function()
    start({ lines = { "" } })
    answer({ { insertText = "z", command = { title = "accepted", command = "codestral.accepted", arguments = { 1 } } } })
    child:input("i<M-]>")
    child:wait("require('codestral').is_visible()")
    child:input("<Tab>")
    child:wait("#require('fake_server').messages('workspace/executeCommand') == 1")
    eq(
      { title = "accepted", command = "codestral.accepted", arguments = { 1 } },
      child:lua("return require('fake_server').messages('workspace/executeCommand')[1]"),
      "command"
    )
  end)
end)

describe("keymaps", function()
  it("Tab indents when no suggestion is shown", function()
    start({ lines = { "" } })
    child:lua("vim.bo.expandtab = false; vim.bo.softtabstop = 0")
    child:input("i<Tab>x<Esc>")
    child:settle()
    eq("\tx", line(), "line")
  end)

  it("keymaps = false maps nothing; a key set to false is left alone", function()
    -- Neovim's own insert-mode <Tab> mapping: 0.11 maps it to snippet jumps, 0.10 not at all.
    local own_tab = vim.fn.has("nvim-0.11") == 1 and "vim.snippet.jump if active, otherwise <Tab>" or ""
    start({ setup = { keymaps = false } })
    local function desc(lhs)
      return child:lua("return vim.fn.maparg(..., 'i', false, true).desc or ''", lhs)
    end
    eq("", desc("<M-w>"), "<M-w>")
    eq(own_tab, desc("<Tab>"), "<Tab> keeps Neovim's own mapping")
    child:lua("require('codestral').setup({ cmd = require('fake_server').cmd })")
    eq("codestral: Accept the suggestion", desc("<Tab>"), "<Tab> after the second setup")
    child:lua("require('codestral').setup({ cmd = require('fake_server').cmd, keymaps = { accept = false } })")
    eq(own_tab, desc("<Tab>"), "<Tab> given back after the third setup")
    eq("codestral: Accept the next word of the suggestion", desc("<M-w>"), "<M-w> after the third setup")
  end)

  it("auto-triggers after typing, after the debounce", function()
    start({ setup = { auto_trigger = true, debounce_ms = 10 } })
    answer({ { insertText = "auto" } })
    child:input("ix")
    child:wait("require('codestral').is_visible()")
    eq(
      2,
      child:lua("return require('fake_server').messages('textDocument/inlineCompletion')[1].context.triggerKind"),
      "triggerKind Automatic"
    )
  end)
end)

describe("docs and health", function()
  it(":checkhealth codestral reports the model and the Neovim version", function()
    start()
    child:lua("vim.cmd('checkhealth codestral')")
    local report = child:lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')")
    ok(report:find("model loaded: fake"), report)
    ok(report:find("Neovim 0%.1%d"), report)
    ok(report:find("in%-process function"), report)
  end)

  it(":checkhealth codestral reports a model that failed to load", function()
    child = helpers.child()
    child:lua([[
      local fake = require("fake_server")
      fake.status = { state = "error", message = "could not load the model: no such folder", model = "/nowhere" }
      require("codestral").setup({ cmd = fake.cmd })
    ]])
    child:edit("a.py", { "" })
    child:wait("(require('codestral').status() or {}).state == 'error'")
    child:lua("vim.cmd('checkhealth codestral')")
    local report = child:lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')")
    ok(report:find("ERROR model failed: /nowhere: could not load the model: no such folder"), report)
    ok(child:messages():find("codestral: could not load the model"), "the error was notified")
  end)

  it(":Codestral runs actions and reports the status", function()
    start({ lines = { "x = " } })
    answer({ { insertText = "42" } })
    child:input("A")
    child:lua("vim.cmd('Codestral request')")
    child:wait("require('codestral').is_visible()")
    child:lua("vim.cmd('Codestral accept')")
    eq("x = 42", line(), "line")
    child:lua("vim.cmd('Codestral')")
    ok(child:messages():find("codestral: ready"), child:messages())
  end)

  it(":Codestral names the backend that answered the last suggestion", function()
    start({ lines = { "x = " } })
    child:lua([[require("fake_server").send_status({ state = "ready", message = "openai backend", model = "openai:m",
      lastBackend = "openai:m" })]])
    child:wait("(require('codestral').status() or {}).lastBackend == 'openai:m'")
    child:lua("vim.cmd('Codestral')")
    ok(child:messages():find("codestral: ready openai backend %(last suggestion from openai:m%)"), child:messages())
  end)

  it("doc/codestral.txt has valid help tags", function()
    child = helpers.child()
    local tags = child:lua(
      [[
      local dir = vim.fn.tempname()
      vim.fn.mkdir(dir, "p")
      vim.fn.writefile(vim.fn.readfile(... .. "/doc/codestral.txt"), dir .. "/codestral.txt")
      vim.cmd.helptags(vim.fn.fnameescape(dir))
      return vim.fn.readfile(dir .. "/tags")
    ]],
      helpers.plugin_root
    )
    local joined = table.concat(tags, "\n")
    for _, tag in ipairs({ "codestral.txt", "codestral.setup()", "codestral.accept()", "codestral-health" }) do
      ok(joined:find(vim.pesc(tag) .. "\t"), "missing tag " .. tag)
    end
  end)
end)
